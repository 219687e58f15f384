// mobiclass in the browser: the model runs on onnxruntime-web (WebAssembly, from ./ort/, never a CDN), after the
// preprocessing mobiclass trained and verified it with, reproduced step by step: Pillow's JPEG draft decoding
// (approximated by block averages), its reduce() and its two-pass fixed-point resampling, then mean and std in
// float32, then softmax of logits / temperature. PNG and other lossless photos give mobiclass's exact input.
import * as ort from "./ort/ort.wasm.min.mjs";

const HERE = new URL(".", import.meta.url);
ort.env.wasm.wasmPaths = new URL("ort/", HERE).href;
// Threads need a cross-origin isolated page (COOP/COEP headers); any static server gives one thread.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

const PRECISION_BITS = 22;  // Pillow's fixed point for 8-bit images: 32 - 8 - 2
const FILTERS = {
  bilinear: {support: 1.0, f: (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; }},
  bicubic: {support: 2.0, f: (x) => {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  }},
};

let loaded = null;

/** The model, its metadata (labels, preprocessing, temperature) and an onnxruntime-web session, loaded once. */
export function load() {
  if (!loaded) {
    loaded = (async () => {
      const response = await fetch(new URL("model.json", HERE));
      if (!response.ok) throw new Error(`model.json: HTTP ${response.status}`);
      const meta = await response.json();
      const session = await ort.InferenceSession.create(new URL(meta.model, HERE).href,
                                                        {executionProviders: ["wasm"]});
      return {meta, session};
    })();
  }
  return loaded;
}

/** [{label, confidence}, ...] best first, for a URL, a Blob/File, or an <img>, <canvas>, <video> or ImageBitmap. */
export async function classify(source, topK = 5) {
  const {meta, session} = await load();
  const image = await decode(source, meta.preprocessing.resize);
  const input = normalize(crop(image, meta.preprocessing), meta.preprocessing);
  const size = meta.preprocessing.size;
  const feeds = {[session.inputNames[0]]: new ort.Tensor("float32", input, [1, 3, size, size])};
  const logits = (await session.run(feeds))[session.outputNames[0]].data;
  return rank(logits, meta, topK);
}

function rank(logits, meta, topK) {
  const scaled = Array.from(logits, (v) => v / meta.temperature);
  const top = Math.max(...scaled);
  const exps = scaled.map((v) => Math.exp(v - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((v, i) => ({label: meta.classes[i], index: i, confidence: v / total}))
    .sort((a, b) => b.confidence - a.confidence).slice(0, topK);
}

// ---- decoding: RGB bytes at the photo's own size, EXIF orientation applied, transparency on white ----

async function decode(source, minSize) {
  let blob = null;
  if (typeof source === "string" || source instanceof URL) {
    blob = await fetched(source);
  } else if (source instanceof Blob) {
    blob = source;
  } else if (typeof HTMLImageElement !== "undefined" && source instanceof HTMLImageElement && source.currentSrc) {
    blob = await fetched(source.currentSrc);  // the file itself: decoded as mobiclass decodes it
  }
  let bitmap, jpeg = false;
  if (blob) {
    const head = new Uint8Array(await blob.slice(0, 3).arrayBuffer());
    jpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
    bitmap = await createImageBitmap(blob, {imageOrientation: "from-image", premultiplyAlpha: "none",
                                           colorSpaceConversion: "none"});
  } else {
    bitmap = await createImageBitmap(source);  // a camera frame or a canvas: its pixels as they are
  }
  const {width, height} = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    data[j] = rgba[i]; data[j + 1] = rgba[i + 1]; data[j + 2] = rgba[i + 2];
  }
  const image = {width, height, data};
  return jpeg ? draft(image, minSize) : image;
}

async function fetched(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.blob();
}

/** Pillow decodes a large JPEG at 1/2, 1/4 or 1/8 scale (draft mode) when the model needs no more; the same
 * scale here, as block averages of the full decode. */
function draft(image, minSize) {
  const scale = Math.min(Math.floor(image.width / minSize), Math.floor(image.height / minSize));
  const s = [8, 4, 2, 1].find((v) => scale >= v) || 1;
  if (s === 1) return image;
  const width = Math.ceil(image.width / s), height = Math.ceil(image.height / s);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const y1 = Math.min((y + 1) * s, image.height);
    for (let x = 0; x < width; x++) {
      const x1 = Math.min((x + 1) * s, image.width);
      const n = (y1 - y * s) * (x1 - x * s);
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let yy = y * s; yy < y1; yy++) {
          for (let xx = x * s; xx < x1; xx++) sum += image.data[(yy * image.width + xx) * 3 + c];
        }
        data[(y * width + x) * 3 + c] = Math.round(sum / n);
      }
    }
  }
  return {width, height, data};
}

// ---- Pillow's Image.resize(size, filter, box, reducing_gap=3.0), reproduced ----

/** Resize so the shorter side is `resize`, keep the central `size` square: mobiclass's Preprocessing.crop. */
export function crop(image, pre) {
  const {size, resize} = pre;
  const filter = FILTERS[pre.interpolation];
  const side = size * Math.min(image.width, image.height) / resize;
  const left = (image.width - side) / 2, top = (image.height - side) / 2;
  let box = [left, top, left + side, top + side];
  if (image.width === size && image.height === size && box[0] === 0 && box[1] === 0 && box[2] === size &&
      box[3] === size) return image;
  const fx = Math.trunc((box[2] - box[0]) / size / 3.0) || 1, fy = Math.trunc((box[3] - box[1]) / size / 3.0) || 1;
  if (fx > 1 || fy > 1) {
    const support = filter.support - 0.5;
    const sx = support * (box[2] - box[0]) / size, sy = support * (box[3] - box[1]) / size;
    const safe = [Math.max(0, Math.trunc(box[0] - sx)), Math.max(0, Math.trunc(box[1] - sy)),
                  Math.min(image.width, Math.ceil(box[2] + sx)), Math.min(image.height, Math.ceil(box[3] + sy))];
    image = reduce(image, fx, fy, safe);
    box = [(box[0] - safe[0]) / fx, (box[1] - safe[1]) / fy, (box[2] - safe[0]) / fx, (box[3] - safe[1]) / fy];
  }
  return resample(image, size, size, filter, box.map(Math.fround));  // C receives the box as float32
}

/** Pillow's reduce(): block sums with rounding, scaled in 8.24 fixed point, partial blocks at the edges. */
function reduce(image, fx, fy, [x0, y0, x1, y1]) {
  const bw = x1 - x0, bh = y1 - y0;
  const width = Math.floor((bw - 1) / fx) + 1, height = Math.floor((bh - 1) / fy) + 1;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const yFrom = y0 + y * fy, yTo = Math.min(yFrom + fy, y0 + bh);
    for (let x = 0; x < width; x++) {
      const xFrom = x0 + x * fx, xTo = Math.min(xFrom + fx, x0 + bw);
      const n = (yTo - yFrom) * (xTo - xFrom);
      const multiplier = Math.trunc(Math.fround(4294967296 / Math.fround(256 * n)));
      for (let c = 0; c < 3; c++) {
        let sum = Math.floor(n / 2);
        for (let yy = yFrom; yy < yTo; yy++) {
          for (let xx = xFrom; xx < xTo; xx++) sum += image.data[(yy * image.width + xx) * 3 + c];
        }
        data[(y * width + x) * 3 + c] = Math.floor(sum * multiplier / 16777216);
      }
    }
  }
  return {width, height, data};
}

function coefficients(inSize, in0, in1, outSize, filter) {
  const scale = Math.fround(in1 - in0) / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const inverse = 1.0 / filterscale;
  const bounds = new Int32Array(outSize * 2), kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    let ww = 0.0;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    for (let x = 0; x < xmax; x++) {
      const w = filter.f((x + xmin - center + 0.5) * inverse);
      kk[xx * ksize + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      if (ww !== 0.0) kk[xx * ksize + x] /= ww;
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  const fixed = new Int32Array(kk.length);
  for (let i = 0; i < kk.length; i++) {
    fixed[i] = kk[i] < 0 ? Math.trunc(-0.5 + kk[i] * (1 << PRECISION_BITS))
                         : Math.trunc(0.5 + kk[i] * (1 << PRECISION_BITS));
  }
  return {bounds, kk: fixed, ksize};
}

function clip8(value) {
  const shifted = Math.floor(value / (1 << PRECISION_BITS));
  return shifted < 0 ? 0 : shifted > 255 ? 255 : shifted;
}

function horizontal(image, width, height, offset, {bounds, kk, ksize}) {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = (y + offset) * image.width;
    for (let x = 0; x < width; x++) {
      const xmin = bounds[x * 2], xmax = bounds[x * 2 + 1];
      for (let c = 0; c < 3; c++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < xmax; i++) ss += image.data[(row + xmin + i) * 3 + c] * kk[x * ksize + i];
        data[(y * width + x) * 3 + c] = clip8(ss);
      }
    }
  }
  return {width, height, data};
}

function vertical(image, height, {bounds, kk, ksize}) {
  const width = image.width;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const ymin = bounds[y * 2], ymax = bounds[y * 2 + 1];
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < ymax; i++) ss += image.data[((ymin + i) * width + x) * 3 + c] * kk[y * ksize + i];
        data[(y * width + x) * 3 + c] = clip8(ss);
      }
    }
  }
  return {width, height, data};
}

/** Pillow's ImagingResample: separable passes, the vertical one first when it shrinks much more. */
function resample(image, width, height, filter, box) {
  if (box[0] === Math.trunc(box[0]) && box[2] - box[0] === width && box[1] === Math.trunc(box[1]) &&
      box[3] - box[1] === height) {
    return cropped(image, box[0], box[1], width, height);
  }
  const needH = width !== image.width || box[0] !== 0 || box[2] !== width;
  const needV = height !== image.height || box[1] !== 0 || box[3] !== height;
  const horizontalFirst = !((image.height - height) > 0 && (image.height - height) > (image.width - width) * 2);
  const vert = (needH && horizontalFirst) || needV ? coefficients(image.height, box[1], box[3], height, filter) : null;
  let first = 0, last = image.height;
  if (needH && horizontalFirst) {
    first = vert.bounds[0];
    last = vert.bounds[height * 2 - 2] + vert.bounds[height * 2 - 1];
    for (let i = 0; i < height; i++) vert.bounds[i * 2] -= first;
  }
  const horiz = needH ? coefficients(image.width, box[0], box[2], width, filter) : null;
  if (horizontalFirst) {
    if (needH) image = horizontal(image, width, last - first, first, horiz);
    if (needV) image = vertical(image, height, vert);
  } else {
    if (needV) image = vertical(image, height, vert);
    if (needH) image = horizontal(image, width, height, 0, horiz);
  }
  return image;
}

function cropped(image, left, top, width, height) {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const start = ((top + y) * image.width + left) * 3;
    data.set(image.data.subarray(start, start + width * 3), y * width * 3);
  }
  return {width, height, data};
}

/** (pixel * (1 / (255 std)) - mean / std) in float32, as numpy computes it, in NCHW order. */
export function normalize(image, pre) {
  const size = image.width * image.height;
  const input = new Float32Array(3 * size);
  for (let c = 0; c < 3; c++) {
    const std = Math.fround(pre.std[c]);
    const scale = Math.fround(1 / Math.fround(255 * std));
    const offset = Math.fround(Math.fround(pre.mean[c]) / std);
    for (let i = 0; i < size; i++) {
      input[c * size + i] = Math.fround(Math.fround(image.data[i * 3 + c] * scale) - offset);
    }
  }
  return input;
}
