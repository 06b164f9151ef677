// Audio worklets of the voice-chat page: they run on the browser's audio thread, so capture and
// playback never wait for the page's main thread.

// Microphone -> main thread, in frames of `frame` samples (40 ms), plus the frame's RMS level.
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frame = new Float32Array(options.processorOptions.frame);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0][0];
    if (!channel) return true;
    let offset = 0;
    while (offset < channel.length) {
      const take = Math.min(channel.length - offset, this.frame.length - this.filled);
      this.frame.set(channel.subarray(offset, offset + take), this.filled);
      this.filled += take;
      offset += take;
      if (this.filled === this.frame.length) {
        let energy = 0;
        for (const x of this.frame) energy += x * x;
        this.port.postMessage({ samples: this.frame.slice(), level: Math.sqrt(energy / this.frame.length) });
        this.filled = 0;
      }
    }
    return true;
  }
}

// Streamed answer -> speakers. Chunks queue in order; `clear` drops what is queued (barge-in) and
// reports how much of the item was heard, which the page sends as conversation.item.truncate.
class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0; // into queue[0].samples
    this.played = {}; // item id -> samples played
    this.total = 0; // samples played in all
    this.sinceReport = 0;
    this.port.onmessage = ({ data }) => {
      if (data.type === "push") {
        this.queue.push(data);
      } else if (data.type === "clear") {
        const item = this.queue.length ? this.queue[0].item : null;
        this.queue = [];
        this.offset = 0;
        this.port.postMessage({ type: "cleared", item, played: item ? this.played[item] || 0 : 0 });
      }
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.queue.length) {
      const chunk = this.queue[0];
      const take = Math.min(out.length - written, chunk.samples.length - this.offset);
      out.set(chunk.samples.subarray(this.offset, this.offset + take), written);
      this.played[chunk.item] = (this.played[chunk.item] || 0) + take;
      written += take;
      this.offset += take;
      if (this.offset === chunk.samples.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, written);
    this.total += written;
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 10) {
      this.port.postMessage({ type: "progress", total: this.total, queued: this.queue.length });
      this.sinceReport = 0;
    }
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("player", Player);
