// mqtt.js over WebSocket against the broker: `node mqttjs.mjs WS_PORT VERSION TOPIC`
// (VERSION 4 = MQTT 3.1.1, 5 = MQTT 5.0). Driven by tests/paho/test_websocket.py, which checks
// what is printed and what a mosquitto_sub on the plain listener receives.
//
// Two mqtt.js clients: `sub` subscribes to TOPIC/# at QoS 2, `pub` publishes one message at each
// QoS to TOPIC/q0..q2 (and one retained to TOPIC/retained). Prints one JSON line per message
// `sub` receives, then `done`; exits 1 on any error or after 10 s.
import mqtt from "mqtt";

const [port, version, topic] = process.argv.slice(2);
const url = `ws://127.0.0.1:${port}/mqtt`;
const options = { protocolVersion: Number(version), reconnectPeriod: 0, connectTimeout: 5000 };

const fail = (why) => {
  console.error(`error: ${why}`);
  process.exit(1);
};
setTimeout(() => fail("timed out"), 10000).unref();

const connect = (clientId) =>
  new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { ...options, clientId });
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });

const sub = await connect(`mqttjs-sub-${version}`).catch((e) => fail(e.message));
const expected = 4;
let got = 0;
sub.on("message", (t, payload, packet) => {
  console.log(JSON.stringify({ topic: t, payload: payload.toString(), qos: packet.qos, retain: packet.retain }));
  got += 1;
  if (got === expected) {
    console.log("done");
    sub.end(false, () => pub.end(false, () => process.exit(0)));
  }
});
await sub.subscribeAsync(`${topic}/#`, { qos: 2 }).catch((e) => fail(e.message));
const pub = await connect(`mqttjs-pub-${version}`).catch((e) => fail(e.message));
for (const qos of [0, 1, 2]) {
  await pub.publishAsync(`${topic}/q${qos}`, `hello ${qos}`, { qos }).catch((e) => fail(e.message));
}
await pub.publishAsync(`${topic}/retained`, "kept", { qos: 1, retain: true }).catch((e) => fail(e.message));
