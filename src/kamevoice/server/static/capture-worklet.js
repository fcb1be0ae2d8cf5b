// Microphone capture: resamples the context's rate to 24 kHz (linear interpolation) and posts
// Float32Array chunks to the page. `sampleRate` is the AudioWorkletGlobalScope's context rate.
const TARGET_RATE = 24000;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.pos = 0; // position of the next output sample, in input samples relative to `prev`
    this.prev = 0; // the last input sample of the previous block
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel || channel.length === 0) return true;
    const out = [];
    // Input index -1 is `prev`; 0..n-1 is this block.
    while (this.pos < channel.length - 1) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i < 0 ? this.prev : channel[i];
      const b = channel[i + 1];
      out.push(a + (b - a) * frac);
      this.pos += this.step;
    }
    this.pos -= channel.length;
    this.prev = channel[channel.length - 1];
    if (out.length) this.port.postMessage(Float32Array.from(out));
    return true;
  }
}

registerProcessor("kame-capture", CaptureProcessor);
