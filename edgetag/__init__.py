"""edgetag: tag photos on the device and publish the tags over MQTT; no image leaves the house."""

__version__ = "0.1.0"
