// The official npm `openai` SDK against a running DiTServer: models.list, models.retrieve, images.generate
// (b64_json and url), images.edit (with OpenAI's mask), images.createVariation and the error paths, read the way an SDK user reads them. CI runs it (OpenAINodeSdkTests); by hand:
//   dotnet run --project src/DiTServer.Api -c Release --urls http://127.0.0.1:5000 --PublicUrls:BaseUrl=http://127.0.0.1:5000 &
// (BaseUrl, or AllowedHosts, makes the `url` results absolute, as SDKs need: docs/clients.md)
//   tools/openai-node/run.sh http://127.0.0.1:5000   (CI runs it through OpenAINodeSdkTests)
// Exits 0 when every check passes, 1 with the failed checks listed.
import OpenAI, { toFile } from "openai";
import { deflateSync } from "node:zlib";

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

// A square RGBA PNG, made here so the check needs no image package: pixel(x, y) → [r, g, b, a].
const png = (side, pixel) => {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, "ascii");
    data.copy(out, 8);
    out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0); header.writeUInt32BE(side, 4); header[8] = 8; header[9] = 6; // 8-bit RGBA
  const rows = Buffer.alloc(side * (1 + 4 * side));
  for (let y = 0; y < side; y++)
    for (let x = 0; x < side; x++) Buffer.from(pixel(x, y)).copy(rows, y * (1 + 4 * side) + 1 + 4 * x);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows)), chunk("IEND", Buffer.alloc(0))]);
};
const side = Number(size.split("x")[0]);
const picture = () => toFile(png(side, (x, y) => [x * 255 / side, y * 255 / side, 128, 255]), "picture.png", { type: "image/png" });
const leftHalfTransparent = () => toFile(png(side, (x) => [0, 0, 0, x < side / 2 ? 0 : 255]), "mask.png", { type: "image/png" });
const classNames = (await (await fetch(`${base}/v1/classes`)).json()).classes.map((c) => c.name);

await check("images.edit with a mask gives PNGs of the prompt's class", async () => {
  const r = await client.images.edit({ image: await picture(), mask: await leftHalfTransparent(), prompt: "1", n: 2, size,
    response_format: "b64_json" });
  expect(r.data.length === 2, `${r.data.length} images`);
  expect(Buffer.from(r.data[0].b64_json, "base64").subarray(1, 4).toString() === "PNG", "not a PNG");
  expect(r.data[0].revised_prompt === classNames[1], `revised_prompt ${r.data[0].revised_prompt}`);
});
await check("images.createVariation gives fetchable results of a class the model knows", async () => {
  const r = await client.images.createVariation({ image: await picture(), n: 1, size, response_format: "url" });
  expect((await fetch(r.data[0].url)).ok, "the URL does not answer");
  expect(classNames.includes(r.data[0].revised_prompt), `revised_prompt ${r.data[0].revised_prompt}`);
});
await check("images.edit of an unknown class is a 400 naming prompt", async () =>
  refused(async () => client.images.edit({ image: await picture(), prompt: "zebra" }), 400, "prompt"));
await check("images.createVariation of a non-PNG is a 400 naming image", async () => {
  const e = await refused(async () => client.images.createVariation({ image: await toFile(Buffer.from("GIF89a"), "picture.gif") }), 400, "image");
  expect(e.message.includes("not a PNG"), e.message);
});

console.log(failures.length === 0 ? "all checks passed" : `${failures.length} check(s) failed`);
process.exit(failures.length === 0 ? 0 : 1);
