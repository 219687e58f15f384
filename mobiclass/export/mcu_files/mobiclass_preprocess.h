/* mobiclass preprocessing in plain C99: a camera frame -> the model's int8 input.
 *
 * The central square of MOBICLASS_SIZE / MOBICLASS_RESIZE of the frame's shorter side, resampled to
 * MOBICLASS_SIZE x MOBICLASS_SIZE with a triangle (bilinear) filter widened to the scale, as Pillow resizes in
 * mobiclass, then each 8-bit channel through mobiclass_tables: mean, std and the input quantization folded in.
 */
#ifndef MOBICLASS_PREPROCESS_H
#define MOBICLASS_PREPROCESS_H

#include <stdint.h>
#include "mobiclass_model.h"

enum mobiclass_pixels { MOBICLASS_RGB888 = 0, MOBICLASS_RGB565 = 1, MOBICLASS_RGB565_BE = 2 };

static inline void mobiclass_pixel(const uint8_t *frame, int format, long index, float rgb[3]) {
    if (format == MOBICLASS_RGB888) {
        rgb[0] = frame[3 * index]; rgb[1] = frame[3 * index + 1]; rgb[2] = frame[3 * index + 2];
        return;
    }
    uint16_t v = format == MOBICLASS_RGB565 ? (uint16_t)(frame[2 * index] | frame[2 * index + 1] << 8)
                                            : (uint16_t)(frame[2 * index] << 8 | frame[2 * index + 1]);
    rgb[0] = (float)(((v >> 11) & 31) * 255 / 31);
    rgb[1] = (float)(((v >> 5) & 63) * 255 / 63);
    rgb[2] = (float)((v & 31) * 255 / 31);
}

/* Fills input[MOBICLASS_SIZE * MOBICLASS_SIZE * 3] (NHWC) from a width x height frame. */
static inline void mobiclass_preprocess(const uint8_t *frame, int width, int height, int format, int8_t *input) {
    const float shorter = (float)(width < height ? width : height);
    const float crop = MOBICLASS_SIZE * shorter / MOBICLASS_RESIZE;
    const float left = (width - crop) / 2.0f, top = (height - crop) / 2.0f;
    const float scale = crop / MOBICLASS_SIZE;
    const float support = scale > 1.0f ? scale : 1.0f;
    for (int y = 0; y < MOBICLASS_SIZE; y++) {
        const float cy = top + (y + 0.5f) * scale;
        int y0 = (int)(cy - support + 0.5f), y1 = (int)(cy + support + 0.5f);
        if (y0 < 0) y0 = 0;
        if (y1 > height) y1 = height;
        for (int x = 0; x < MOBICLASS_SIZE; x++) {
            const float cx = left + (x + 0.5f) * scale;
            int x0 = (int)(cx - support + 0.5f), x1 = (int)(cx + support + 0.5f);
            if (x0 < 0) x0 = 0;
            if (x1 > width) x1 = width;
            float sum[3] = {0, 0, 0}, total = 0, rgb[3];
            for (int sy = y0; sy < y1; sy++) {
                float wy = 1.0f - ((sy + 0.5f - cy) < 0 ? cy - sy - 0.5f : sy + 0.5f - cy) / support;
                if (wy <= 0) continue;
                for (int sx = x0; sx < x1; sx++) {
                    float wx = 1.0f - ((sx + 0.5f - cx) < 0 ? cx - sx - 0.5f : sx + 0.5f - cx) / support;
                    if (wx <= 0) continue;
                    mobiclass_pixel(frame, format, (long)sy * width + sx, rgb);
                    for (int c = 0; c < 3; c++) sum[c] += wx * wy * rgb[c];
                    total += wx * wy;
                }
            }
            for (int c = 0; c < 3; c++) {
                int v = (int)(sum[c] / total + 0.5f);
                input[(y * MOBICLASS_SIZE + x) * 3 + c] = mobiclass_tables[c][v < 0 ? 0 : v > 255 ? 255 : v];
            }
        }
    }
}

#endif
