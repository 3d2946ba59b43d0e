"""MQTT adapter: publish each delivery to the broker (the machine's Mosquitto by default), QoS 1.

Topic: `dispatch.mqtt_topic` with `{camera_id}` filled in (default `citypatrol/cases/<camera>`).
The payload is the JSON body; MQTT 5 user properties carry what HTTP sends as headers
(`Idempotency-Key`, `X-Citypatrol-Case-Id`, `X-Citypatrol-Kind`, `X-Citypatrol-Timestamp`,
`X-Citypatrol-Signature`). QoS 1 is at-least-once: a delivery counts once the broker acknowledges
it (PUBACK); subscribers dedupe on the idempotency key. The client id is
`dispatch.mqtt_client_id` plus the process id, so two dispatchers never kick each other off.
"""

from __future__ import annotations

import logging
import os
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citypatrol.pipeline.config.models import DispatchConfig
from citypatrol.pipeline.dispatch.base import Delivery, Outcome

log = logging.getLogger(__name__)


class MqttAdapter:
    name = "mqtt"

    def __init__(self, config: DispatchConfig) -> None:
        self.config = config
        self.client_id = f"{config.mqtt_client_id}-{os.getpid()}"
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    def _connect(self) -> mqtt.Client:
        if self._client is not None and self._client.is_connected():
            return self._client
        if self._client is None:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
            if self.config.mqtt_username:
                c.username_pw_set(self.config.mqtt_username, self.config.mqtt_password or None)
            c.on_connect = self._on_connect
            c.on_disconnect = self._on_disconnect
            self._client = c
            c.connect(self.config.mqtt_host, self.config.mqtt_port, keepalive=30)
            c.loop_start()
        if not self._connected.wait(self.config.timeout_s):
            raise ConnectionError(f"no CONNACK from {self.config.mqtt_host}:{self.config.mqtt_port} in {self.config.timeout_s:.0f} s")
        return self._client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001 (paho callback)
        if reason_code.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self.config.mqtt_host, self.config.mqtt_port, reason_code)
            return
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self._connected.clear()

    def send(self, delivery: Delivery) -> Outcome:
        where = f"{self.config.mqtt_host}:{self.config.mqtt_port}"
        try:
            client = self._connect()
        except (OSError, ConnectionError) as exc:
            self._drop()
            return Outcome.failed(f"cannot reach the MQTT broker at {where}: {exc}")
        topic = self.config.mqtt_topic.format(camera_id=delivery.camera_id)
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.UserProperty = list(delivery.headers(self.config.secret).items())
        try:
            info = client.publish(topic, delivery.body, qos=self.config.mqtt_qos, properties=props)
            info.wait_for_publish(self.config.timeout_s)
        except (RuntimeError, ValueError) as exc:
            return Outcome.failed(f"publish to {topic} at {where} failed: {exc}")
        if not info.is_published():
            return Outcome.failed(f"the broker at {where} did not acknowledge {topic} in {self.config.timeout_s:.0f} s")
        return Outcome.delivered(f"published to {topic} (QoS {self.config.mqtt_qos})")

    def _drop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client = None
            self._connected.clear()

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
        self._drop()
