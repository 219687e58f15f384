// mobiclass on an ESP32-S3 with a camera (XIAO ESP32S3 Sense pins): frames in, the top class and confidence out
// on the console. Build with ESP-IDF 5: idf.py set-target esp32s3 && idf.py build flash monitor
#include <stdio.h>
#include "esp_camera.h"
#include "esp_heap_caps.h"
#include "esp_timer.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "model_data.h"
#include "mobiclass_model.h"
#include "mobiclass_preprocess.h"

static camera_config_t camera_config() {
  camera_config_t config = {};
  config.pin_pwdn = -1; config.pin_reset = -1; config.pin_xclk = 10; config.pin_sccb_sda = 40;
  config.pin_sccb_scl = 39; config.pin_d7 = 48; config.pin_d6 = 11; config.pin_d5 = 12; config.pin_d4 = 14;
  config.pin_d3 = 16; config.pin_d2 = 18; config.pin_d1 = 17; config.pin_d0 = 15; config.pin_vsync = 38;
  config.pin_href = 47; config.pin_pclk = 13;
  config.xclk_freq_hz = 20000000; config.pixel_format = PIXFORMAT_RGB565; config.frame_size = FRAMESIZE_QVGA;
  config.fb_count = 1; config.fb_location = CAMERA_FB_IN_PSRAM; config.grab_mode = CAMERA_GRAB_LATEST;
  return config;
}

extern "C" void app_main(void) {
  camera_config_t config = camera_config();
  if (esp_camera_init(&config) != ESP_OK) { printf("camera failed to start\n"); return; }
  // The arena goes to PSRAM: ${arena_kb} kB measured by TensorFlow Lite Micro, plus a margin.
  uint8_t *arena = (uint8_t *)heap_caps_aligned_alloc(16, MOBICLASS_ARENA_SIZE, MALLOC_CAP_SPIRAM);
  static tflite::MicroMutableOpResolver<${op_count}> resolver;
${resolver}
  static tflite::MicroInterpreter interpreter(tflite::GetModel(g_model), resolver, arena, MOBICLASS_ARENA_SIZE);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    printf("AllocateTensors failed: raise MOBICLASS_ARENA_SIZE in mobiclass_model.h\n");
    return;
  }
  while (true) {
    camera_fb_t *fb = esp_camera_fb_get();
    if (!fb) continue;
    mobiclass_preprocess(fb->buf, fb->width, fb->height, MOBICLASS_RGB565_BE, interpreter.input(0)->data.int8);
    esp_camera_fb_return(fb);
    int64_t started = esp_timer_get_time();
    interpreter.Invoke();
    int best = 0;
    float confidence = mobiclass_top1(interpreter.output(0)->data.int8, &best);
    printf("%s %.3f (%lld ms)\n", mobiclass_labels[best], confidence, (esp_timer_get_time() - started) / 1000);
  }
}
