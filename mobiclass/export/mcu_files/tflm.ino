// mobiclass on Arduino Nicla Vision (or another mbed board with its camera library): camera frames in, the top class and its confidence out on the serial port.
// Arduino IDE: open this folder (the sketch is named after it), install the Chirale_TensorFlowLite library,
// select the board, upload, then open the Serial Monitor at 115200 baud.
#include <Chirale_TensorFlowLite.h>
#include <math.h>
#include "camera.h"
#include "gc2145.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "model_data.h"
#include "mobiclass_model.h"
#include "mobiclass_preprocess.h"

GC2145 sensor;
Camera cam(sensor);
FrameBuffer frame;
alignas(16) static uint8_t tensor_arena[MOBICLASS_ARENA_SIZE];
static tflite::MicroInterpreter *interpreter;

void setup() {
  Serial.begin(115200);
  if (!cam.begin(CAMERA_R320x240, CAMERA_RGB565, 30)) { Serial.println("camera failed to start"); while (1) {} }
  static tflite::MicroMutableOpResolver<${op_count}> resolver;
${resolver}
  static tflite::MicroInterpreter micro(tflite::GetModel(g_model), resolver, tensor_arena, MOBICLASS_ARENA_SIZE);
  interpreter = &micro;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    Serial.println("AllocateTensors failed: raise MOBICLASS_ARENA_SIZE in mobiclass_model.h");
    while (1) {}
  }
}

void loop() {
  if (cam.grabFrame(frame, 3000) != 0) return;
  mobiclass_preprocess(frame.getBuffer(), 320, 240, MOBICLASS_RGB565, interpreter->input(0)->data.int8);
  unsigned long started = millis();
  interpreter->Invoke();
  int best = 0;
  float confidence = mobiclass_top1(interpreter->output(0)->data.int8, &best);
  Serial.print(mobiclass_labels[best]);
  Serial.print(" ");
  Serial.print(confidence, 3);
  Serial.print(" (");
  Serial.print(millis() - started);
  Serial.println(" ms)");
}
