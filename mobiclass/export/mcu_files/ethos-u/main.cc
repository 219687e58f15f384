// mobiclass on a Cortex-M with an Ethos-U55: hand mobiclass_classify() a camera frame from the board's driver.
// Build with TensorFlow Lite Micro and the Ethos-U driver (CO_PROCESSOR=ethos_u); see README.md.
#include <stdio.h>
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "model_data.h"
#include "mobiclass_model.h"
#include "mobiclass_preprocess.h"

alignas(16) static uint8_t tensor_arena[MOBICLASS_ARENA_SIZE];  // ${arena_kb} kB measured, plus a margin

static tflite::MicroInterpreter *interpreter() {
  static tflite::MicroMutableOpResolver<${op_count}> resolver;
  static bool registered = false;
  if (!registered) {
${resolver}
    registered = true;
  }
  static tflite::MicroInterpreter micro(tflite::GetModel(g_model), resolver, tensor_arena, MOBICLASS_ARENA_SIZE);
  static bool allocated = micro.AllocateTensors() == kTfLiteOk;
  return allocated ? &micro : nullptr;
}

// A frame (RGB888 or RGB565) in; the top class out, with its calibrated confidence. -1 if the model did not load.
int mobiclass_classify(const uint8_t *frame, int width, int height, int format, float *confidence) {
  tflite::MicroInterpreter *micro = interpreter();
  if (micro == nullptr) {
    printf("AllocateTensors failed: raise MOBICLASS_ARENA_SIZE in mobiclass_model.h\n");
    return -1;
  }
  mobiclass_preprocess(frame, width, height, format, micro->input(0)->data.int8);
  if (micro->Invoke() != kTfLiteOk) return -1;
  int best = 0;
  *confidence = mobiclass_top1(micro->output(0)->data.int8, &best);
  printf("%s %.3f\n", mobiclass_labels[best], *confidence);
  return best;
}
