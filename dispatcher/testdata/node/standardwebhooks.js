// Verifies recorded changehook requests with the official Standard Webhooks
// library (npm package "standardwebhooks"), as a Node.js receiver would.
//
// stdin: a JSON array of checks {name, secret, headers, body, asString}:
// secret is given to new Webhook(secret) as it is; headers maps lower-case
// names to values as Node's http module presents them; body is the raw
// request body in base64, passed to verify() as a Buffer, or decoded as
// UTF-8 into a string when asString is true (what a receiver that reads the
// body as text does).
//
// stdout: a JSON array of results {name, ok, error, parsed} in the same
// order (error: the library's message when verify() throws; parsed: the
// type verify() returned, "array" or "object"), then a last line "ok".
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const results = JSON.parse(input).map((c) => {
    const raw = Buffer.from(c.body, "base64");
    const payload = c.asString ? new TextDecoder("utf-8").decode(raw) : raw;
    try {
      const parsed = new Webhook(c.secret).verify(payload, c.headers);
      return { name: c.name, ok: true, parsed: Array.isArray(parsed) ? "array" : typeof parsed };
    } catch (e) {
      return { name: c.name, ok: false, error: String(e && e.message) };
    }
  });
  process.stdout.write(JSON.stringify(results) + "\nok\n");
});
