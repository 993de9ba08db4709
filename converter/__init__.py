"""Host side: trained Keras model -> fully int8 TFLite step model + metadata, verified.

``python -m converter convert MODEL.keras --cache CACHE --out models/lite/percepnet_lite.tflite``
``python -m converter verify models/lite/percepnet_lite.tflite --float-model MODEL.keras --cache CACHE``
"""
