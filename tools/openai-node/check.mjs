// The official npm `openai` SDK against a running DiTServer: models.list, models.retrieve, images.generate
// (b64_json and url) and the error paths, read the way an SDK user reads them. Opt-in (it needs npm and a server):
//   dotnet run --project src/DiTServer.Api -c Release --urls http://127.0.0.1:5000 --PublicUrls:BaseUrl=http://127.0.0.1:5000 &
// (BaseUrl, or AllowedHosts, makes the `url` results absolute, as SDKs need: docs/clients.md)
//   tools/openai-node/run.sh http://127.0.0.1:5000
// Exits 0 when every check passes, 1 with the failed checks listed.
import OpenAI from "openai";

const base = (process.argv[2] || process.env.DIT_URL || "http://127.0.0.1:5000").replace(/\/$/, "");
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
const failures = [];
const check = async (name, body) => {
  try { await body(); console.log(`ok   ${name}`); }
  catch (e) { failures.push(name); console.log(`FAIL ${name}: ${e.message}`); }
};
const expect = (condition, message) => { if (!condition) throw new Error(message); };
const refused = async (call, status, param) => {
  try { await call(); } catch (e) {
    expect(e instanceof OpenAI.APIError, `not an APIError: ${e}`);
    expect(e.status === status, `status ${e.status}, expected ${status}`);
    expect(e.error?.param === param, `param ${e.error?.param}, expected ${param}`);
    expect(!/no body/.test(e.message), `the SDK saw no error body: ${e.message}`);
    return e;
  }
  throw new Error("no error");
};

const models = await client.models.list();
const model = models.data[0];
let size;
await check("models.list returns the served model", async () => {
  expect(models.data.length === 1 && model.object === "model", JSON.stringify(models.data));
  const info = await (await fetch(`${base}/v1/models`)).json();
  size = `${info.models[0].image_size}x${info.models[0].image_size}`;
});
await check("models.retrieve finds it", async () => {
  expect((await client.models.retrieve(model.id)).id === model.id, "wrong id");
});
await check("models.retrieve of another id is a 404 with code model_not_found", async () => {
  const e = await refused(() => client.models.retrieve("dall-e-3"), 404, "model");
  expect(e.code === "model_not_found", `code ${e.code}`);
});
await check("images.generate b64_json gives PNGs", async () => {
  const r = await client.images.generate({ model: model.id, prompt: "1", n: 2, size, response_format: "b64_json" });
  expect(r.data.length === 2, `${r.data.length} images`);
  expect(Buffer.from(r.data[0].b64_json, "base64").subarray(1, 4).toString() === "PNG", "not a PNG");
});
await check("images.generate url gives fetchable results", async () => {
  const r = await client.images.generate({ model: model.id, prompt: "1", size, response_format: "url" });
  expect((await fetch(r.data[0].url)).ok, "the URL does not answer");
});
await check("a wrong size is a 400 naming size", async () => {
  const e = await refused(() => client.images.generate({ prompt: "1", size: "1024x1024" }), 400, "size");
  expect(e.message.includes("size must be"), e.message);
});
await check("an unknown class is a 400 naming prompt", () => refused(() => client.images.generate({ prompt: "zebra" }), 400, "prompt"));
await check("output_format jpeg is refused by name", () =>
  refused(() => client.images.generate({ prompt: "1", output_format: "jpeg" }), 400, "output_format"));

console.log(failures.length === 0 ? "all checks passed" : `${failures.length} check(s) failed`);
process.exit(failures.length === 0 ? 0 : 1);
