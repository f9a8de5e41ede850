"""The alternative users write themselves: Flask, Pillow decode, one lock around the model, predict, summary().

`python bench/naive_flask.py WEIGHTS PORT` — written the way a tutorial would, on purpose: it is what `make bench`
compares the endpoint against.
"""

import sys
import threading

from flask import Flask, jsonify, request
from PIL import Image
from ultralytics import YOLO

app = Flask(__name__)
model = YOLO(sys.argv[1])
lock = threading.Lock()


@app.get("/ready")
def ready():
    return "ok"


@app.post("/predict")
def predict():
    image = Image.open(request.files["file"].stream).convert("RGB")
    with lock:
        result = model.predict(image, conf=float(request.form.get("conf", 0.25)), verbose=False)[0]
    return jsonify({"images": [{"shape": list(result.orig_shape), "results": result.summary()}]})


if __name__ == "__main__":
    model.predict(Image.new("RGB", (640, 480)), verbose=False)  # warm up before taking requests
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
