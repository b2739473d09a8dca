using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace DiTServer.Bench.Evidence;

/// <summary>One generated request: method, path with query, optional body and headers.</summary>
public sealed record FuzzCase(string Kind, HttpMethod Method, string Path, byte[]? Body, string? ContentType, string? Accept)
{
    /// <summary>A bearer key for the admin routes, so their bodies are read instead of refused with 401.</summary>
    public string? AdminKey { get; init; }

    public HttpRequestMessage ToRequest()
    {
        var request = new HttpRequestMessage(Method, Path);
        if (AdminKey is not null) request.Headers.TryAddWithoutValidation("Authorization", $"Bearer {AdminKey}");
        if (Body is not null)
        {
            request.Content = new ByteArrayContent(Body);
            // As a well-behaved client sends a large body: the server can refuse it before it is on the wire. Without this,
            // a server that answers early and closes leaves the client with a broken pipe instead of the 400.
            // The server then closes the connection (the body was never read): Connection: close keeps the client from
            // reusing it for the next case, which would fail with "response ended prematurely" through no fault of the server.
            if (Body.Length > 1 << 20) { request.Headers.ExpectContinue = true; request.Headers.ConnectionClose = true; }
            // Arbitrary strings go in unvalidated, as a raw client would send them.
            if (ContentType is not null) request.Content.Headers.TryAddWithoutValidation("Content-Type", ContentType);
        }
        if (Accept is not null) request.Headers.TryAddWithoutValidation("Accept", Accept);
        return request;
    }

    public override string ToString()
    {
        var body = Body is null ? "" : Body.Length > 120 ? $" body[{Body.Length} bytes]" : " " + Encoding.UTF8.GetString(Body);
        return $"{Kind}: {Method} {(Path.Length > 120 ? Path[..120] + "…" : Path)} ct={ContentType ?? "-"} accept={Accept ?? "-"}{body}";
    }
}


/// <summary>One request written byte by byte on a raw socket: what no HttpClient sends (broken chunked framing, a body cut
/// off mid-way, a body that stalls). The client then reads the answer, or, when <see cref="Abandon"/>, closes the connection
/// after a moment (a client that gives up mid-body: nobody can read an answer, so the check is that the server logs no
/// error for it). Kestrel has no half-close: a client's FIN aborts the request, so "send part, then FIN" is abandoning too.</summary>
public sealed record RawCase(string Kind, string Path, byte[] Head, byte[] Body, bool Abandon, int? Expected)
{
    public override string ToString() =>
        $"raw {Kind}: POST {Path} head[{Head.Length}] body[{Body.Length}]{(Abandon ? " then close" : "")}";
}

/// <summary>Seeded generator of malformed requests across every endpoint, and a runner that holds the server to its
/// contract: every answer is 4xx problem+json (OpenAI's error object on the OpenAI-style routes), or 2xx when a case is
/// valid by chance; never 5xx, never a hang.</summary>
public static class BadInputFuzzer
{
    private static readonly string[] Endpoints = ["/v1/images", "/v1/models", "/v1/classes", "/health/live", "/health/ready",
        "/v2/health/live", "/v2/health/ready", "/metrics", "/swagger/v1/swagger.json", "/v1/jobs", "/v1/images/generations", "/v1/images/1"];

    private static readonly string[] Fields = ["class_label", "num_images", "steps", "cfg_scale", "seed", "sampler", "guidance", "eta"];

    // Values that are invalid (or valid but cheap: steps stays ≤ 2 whenever a case is valid by chance) for some field.
    private static readonly string[] Values =
    [
        "null", "true", "false", "-1", "0", "1", "-0", "1.5", "-1.5", "1e308", "-1e308", "1e400", "-1e400", "1e-400", "4.9e-324",
        "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616", "99999999999999999999999999999",
        "1001", "100000", "2147483648", "-2147483648", "21", "20.000001", "0.999999", "00", "007", "0x10", "+1", ".5", "5.", "1_000",
        "NaN", "Infinity", "-Infinity", "nan", "inf", "\"NaN\"", "\"Infinity\"", "\"1\"", "\"\"", "\" \"", "\"\\u0000\"", "\"ddim\\u0000\"",
        "\"😀\"", "\"👕 T-shirt\"", "\"تي شيرت\"", "\"\\u202etrohs\"", "\"שמלה\"", "\"Ｔシャツ\"", "\"t-shirt\"", "\"T-SHIRT/TOP\"",
        "\"\\ud800\"", "\"\\uDFFF\\uD800\"", "\"a\\\"b\"", "\"<script>alert(1)</script>\"", "\"' OR 1=1 --\"", "\"../../etc/passwd\"",
        "\"%s%s%n\"", "\"{{7*7}}\"", "[]", "[1]", "[1,2]", "{}", "{\"a\":1}", "[[[]]]", "\"ddpm\"", "\"DDIM\"", "\"euler\"", "\"all\"",
        "\"official \"", "\"" + new string('x', 5000) + "\"",
    ];

    private static readonly string?[] ContentTypes =
    [
        "application/json", "application/json; charset=utf-8", "application/json; charset=utf-16", "application/problem+json",
        "application/vnd.api+json", "text/plain", "text/json", "application/xml", "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x", "application/octet-stream", "image/png", "garbage", ";;;", "application/", "*/*",
        "application/json; charset=nonsense", "APPLICATION/JSON", null,
    ];

    private static readonly string?[] Accepts =
    [
        null, "*/*", "image/png", "application/json", "image/*", "text/html", "application/xml", "image/jpeg", "image/png;q=0",
        "application/json;q=0, image/png;q=0", "application/json;q=0.9, image/png;q=0.1", "garbage", ";;;", "image/png;q=abc",
        "*/*;q=0", "application/problem+json", "text/*", "💥/💥", "application/json, image/png", "",
    ];

    private static readonly HttpMethod[] Methods =
        [HttpMethod.Get, HttpMethod.Post, HttpMethod.Put, HttpMethod.Delete, HttpMethod.Patch, HttpMethod.Options, new("PROPFIND"), new("FOO")];

    private static readonly string[] Queries =
    [
        "", "?steps=5", "?class_label=%F0%9F%98%80", "?a=1&a=2", "?%00=%00", "?format=json", "?x=" + new string('y', 4000), "?;&=&;",
        "?seed=-1&cfg_scale=NaN", "?%zz", "?utf8=%E2%80%AE",
    ];

    /// <param name="adminKey">When given, most cases on admin routes carry it, so the admin bodies are parsed.</param>
    public static IReadOnlyList<FuzzCase> Generate(int count, int seed, string? adminKey = null)
    {
        var rng = new Random(seed);
        // Which POST endpoint a body case goes to comes from its own generator, so the cases of a seed stay what they were
        // before the other endpoints were added.
        var route = new Random(seed ^ 0x5EED);
        var cases = new List<FuzzCase>(count);
        // Two 10 MB bodies are always in (one per shape), whatever the count; more would only cost time.
        cases.Add(Images("10 MB body", Encoding.UTF8.GetBytes("{\"class_label\": \"" + new string('a', 10 << 20) + "\"}")));
        cases.Add(Images("10 MB nested", Encoding.UTF8.GetBytes(new string('[', 5 << 20) + new string(']', 5 << 20))));
        // Image-to-image bodies (init_image, strength, mask) take the last tenth, drawn from their own generator, so the
        // other cases of a seed stay what they were before these fields existed.
        int editCases = Math.Min(count - cases.Count, Math.Max(count / 10, 1));
        while (cases.Count < count - editCases)
        {
            cases.Add((rng.Next(16)) switch
            {
                <= 5 => Images("field value", Encoding.UTF8.GetBytes(MutatedBody(rng))),
                6 => Images("structure", Encoding.UTF8.GetBytes(Structural(rng)), rng: route),
                7 => Images("deep JSON", Encoding.UTF8.GetBytes(Deep(rng))),
                8 => Images("bytes", RandomBytes(rng)),
                9 => Images("content type", Encoding.UTF8.GetBytes(MutatedBody(rng)), Pick(rng, ContentTypes)),
                10 => Images("accept", Encoding.UTF8.GetBytes(Valid()), "application/json", Pick(rng, Accepts)),
                11 => Images("encoding", Encoded(rng), rng: route),
                12 => new FuzzCase("method", Pick(rng, Methods), Pick(rng, Endpoints), rng.Next(2) == 0 ? null : Encoding.UTF8.GetBytes(MutatedBody(rng)),
                    "application/json", Pick(rng, Accepts)),
                13 => new FuzzCase("query", rng.Next(3) == 0 ? HttpMethod.Post : HttpMethod.Get, Pick(rng, Endpoints) + Pick(rng, Queries),
                    rng.Next(2) == 0 ? null : Encoding.UTF8.GetBytes(MutatedBody(rng)), "application/json", Pick(rng, Accepts)),
                14 => new FuzzCase("path", HttpMethod.Get, Pick(rng, ["/v1/images/../models", "/v1/%2e%2e/models", "/v1/models/", "/V1/MODELS",
                    "/v1/models%00", "/v1/classes/😀", "/v1//classes", "/health/live/x", "/metrics?name[]=x", "/v1/classes/" + new string('a', 2000),
                    "/%", "/v1/images%2f", "/swagger/../../etc/passwd"]), null, null, Pick(rng, Accepts)),
                _ => Images("mixed", Encoding.UTF8.GetBytes(MutatedBody(rng)), Pick(rng, ContentTypes), Pick(rng, Accepts)),
            });
        }
        var edits = new Random(seed ^ 0xED17);
        while (cases.Count < count) cases.Add(EditCase(edits));
        if (adminKey is not null)
            for (int i = 0; i < cases.Count; i++)
                if (cases[i].Path.StartsWith("/v1/admin", StringComparison.Ordinal) && route.Next(6) > 0) cases[i] = cases[i] with { AdminKey = adminKey };
        return cases;
    }

    /// <summary>Every POST endpoint that reads a body; the admin ones answer 401 without the key (or 404 when the admin
    /// API is off), which is as good an answer as any 4xx.</summary>
    public static readonly string[] PostEndpoints =
        ["/v1/images", "/v1/jobs", "/v1/images/generations", "/v1/admin/training/jobs", "/v1/admin/training/jobs/nope/activate",
            "/v1/admin/training/jobs/nope/resume"];

    /// <summary>Body cases go mostly to <c>/v1/images</c> (the richest parser), the rest to the other POST endpoints.</summary>
    private static FuzzCase Images(string kind, byte[] body, string? contentType = "application/json", string? accept = null, Random? rng = null) =>
        new(kind, HttpMethod.Post, rng is null || rng.Next(3) > 0 ? "/v1/images" : Pick(rng, PostEndpoints), body, contentType, accept);

    private static T Pick<T>(Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];

    private static string Valid() => """{"class_label": 1, "steps": 2, "cfg_scale": 4, "seed": 7}""";

    /// <summary>A valid cheap body with one to three fields set to a value from the pool (or removed).</summary>
    private static string MutatedBody(Random rng)
    {
        var fields = new Dictionary<string, string> { ["class_label"] = "1", ["steps"] = "2", ["cfg_scale"] = "4", ["seed"] = "7" };
        for (int i = rng.Next(1, 4); i > 0; i--)
        {
            var field = Pick(rng, Fields);
            if (rng.Next(8) == 0) fields.Remove(field);
            else fields[field] = Pick(rng, Values);
        }
        // A big step count would make a valid-by-chance case slow: keep steps cheap or invalid.
        if (fields.TryGetValue("steps", out var s) && int.TryParse(s, out var n) && n > 2 && n <= 1000) fields["steps"] = "2";
        return "{" + string.Join(", ", fields.Select(kv => $"\"{kv.Key}\": {kv.Value}")) + "}";
    }

    /// <summary>A cheap body with init_image, strength and mask drawn from <see cref="EditValues"/> (each present or not),
    /// to <c>/v1/images</c> or <c>/v1/jobs</c>: PNGs of every size, header bombs, cut-off and damaged PNGs, other formats,
    /// broken base64, and strengths in and out of range.</summary>
    private static FuzzCase EditCase(Random rng)
    {
        var fields = new Dictionary<string, string> { ["class_label"] = "1", ["steps"] = "2", ["seed"] = "7" };
        if (rng.Next(8) > 0) fields["init_image"] = Pick(rng, EditValues.Value);
        if (rng.Next(2) == 0) fields["strength"] = Pick(rng, [.. Values, "0.5", "1", "0.0001", "1.0000001", "0.25"]);
        if (rng.Next(2) == 0) fields["mask"] = Pick(rng, EditValues.Value);
        var body = Encoding.UTF8.GetBytes("{" + string.Join(", ", fields.Select(kv => $"\"{kv.Key}\": {kv.Value}")) + "}");
        return new FuzzCase("image edit", HttpMethod.Post, rng.Next(3) == 0 ? "/v1/jobs" : "/v1/images", body, "application/json", null);
    }

    /// <summary>JSON values for init_image and mask (built once: they encode PNGs).</summary>
    private static readonly Lazy<string[]> EditValues = new(() =>
    {
        static string B64(byte[] bytes) => "\"" + Convert.ToBase64String(bytes) + "\"";
        static byte[] Png(int size, int channels, int seed)
        {
            var pixels = new byte[size * size * channels];
            new Random(seed).NextBytes(pixels);
            return Core.Imaging.PngWriter.Encode(pixels, size, size, channels);
        }
        static byte[] Header(uint width, uint height)
        {
            var png = Png(1, 1, 0);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), width);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(20), height);
            return png; // the IHDR's CRC no longer matches either
        }
        var values = new List<string>();
        foreach (int size in new[] { 1, 8, 16, 28, 32, 64 })
            foreach (int channels in new[] { 1, 3 })
            {
                var png = Png(size, channels, size * channels);
                values.Add(B64(png));
                values.Add("\"data:image/png;base64," + Convert.ToBase64String(png) + "\"");
                values.Add(B64(png[..(png.Length / 2)]));                                   // cut off
                var damaged = (byte[])png.Clone();
                for (int i = 40; i < damaged.Length - 12; i += 7) damaged[i] ^= 0x5A;        // damaged data after a good header
                values.Add(B64(damaged));
            }
        foreach (var (w, h) in new (uint, uint)[] { (100_000, 100_000), (0, 16), (16, 0), (4096, 4097), (uint.MaxValue, 1), (16, 16), (28, 28) })
            values.Add(B64(Header(w, h)));                                                  // header bombs and headers without data
        values.AddRange([B64("GIF89a\u0001\u0000\u0001\u0000"u8.ToArray()), B64([0xFF, 0xD8, 0xFF, 0xE0]), B64([0x89, 0x50, 0x4E, 0x47]),
            B64([]), "\"not base64!\"", "\"data:image/png;base64\"", "\"data:text/plain,hi\"", "\"=====\"", "\"QUJD\"", "\"QUJ\"",
            "\"\\u0000\"", "\"😀\"", "null", "1", "true", "[]", "{}", "\"" + new string('A', 12_000) + "\""]);
        return values.ToArray();
    });

    private static string Structural(Random rng) => rng.Next(14) switch
    {
        0 => Valid()[..rng.Next(1, Valid().Length)],                                   // truncated
        1 => Valid() + Valid(),                                                         // two documents
        2 => Valid().Replace("\"class_label\"", "\"class_label\", \"class_label\""),   // broken key list
        3 => "{\"class_label\": 1, \"class_label\": 2, \"steps\": 2}",
        4 => "{\"" + Pick(rng, ["😀", "\u202e", "\u0000", "", " ", "CLASS_LABEL", "class-label", "steps "]) + "\": 1, \"steps\": 2}",
        5 => "{" + string.Join(",", Enumerable.Range(0, 2000).Select(i => $"\"k{i}\":{i}")) + "}",
        6 => "[" + Valid() + "]",
        7 => Pick(rng, ["", " ", "\n", "null", "true", "0", "\"x\"", "[]", "{}", "{,}", "{:}", "{\"a\"}", "}{", "\u0000"]),
        8 => Valid().Replace(" ", "\t\r\n  \u00a0"),
        9 => "{'class_label': 1, 'steps': 2}",
        10 => "{class_label: 1, steps: 2}",
        11 => Valid().TrimEnd('}') + ", // comment\n}",
        12 => Valid().Replace("}", ",}"),
        _ => Valid().Replace("1,", "1\u0000,"),
    };

    private static string Deep(Random rng)
    {
        int depth = Pick(rng, [32, 64, 65, 100, 1000, 100_000]);
        string open = rng.Next(2) == 0 ? "[" : "{\"a\":", close = open == "[" ? "]" : "}";
        string inner = string.Concat(Enumerable.Repeat(open, depth)) + "1" + string.Concat(Enumerable.Repeat(close, depth));
        return rng.Next(2) == 0 ? inner : "{\"class_label\": " + inner + ", \"steps\": 2}";
    }

    private static byte[] RandomBytes(Random rng)
    {
        var bytes = new byte[rng.Next(1, 9000)];
        rng.NextBytes(bytes);
        return bytes;
    }

    /// <summary>The valid body in another encoding, with a BOM, or with invalid UTF-8 inside a string or a field name.</summary>
    private static byte[] Encoded(Random rng) => rng.Next(9) switch
    {
        5 => [.. "{\""u8.ToArray(), 0xFF, 0xFE, .. "\": 1, \"prompt\": \"1\", \"class_label\": 1}"u8.ToArray()],  // invalid UTF-8 in a key
        6 => [.. "{\"class_label"u8.ToArray(), 0xC3, .. "\": 1, \"prompt\": 1}"u8.ToArray()],                    // a cut-off sequence in a key
        7 => "{\"\\ud800\": 1, \"prompt\": \"1\", \"class_label\": 1}"u8.ToArray(),                                 // an escaped lone surrogate as a key
        8 => [.. "{\"prompt\": \""u8.ToArray(), 0xF0, 0x9F, 0x98, .. "\", \"dataset\": \"x\"}"u8.ToArray()],           // truncated 4-byte sequence in a value
        0 => Encoding.Unicode.GetBytes(Valid()),
        1 => [.. Encoding.UTF8.GetPreamble(), .. Encoding.UTF8.GetBytes(Valid())],
        2 => Encoding.UTF32.GetBytes(Valid()),
        3 => [.. "{\"class_label\": \""u8.ToArray(), 0xC3, 0x28, 0xFF, 0xFE, .. "\", \"steps\": 2}"u8.ToArray()],
        _ => [.. "{\"class_label\": \""u8.ToArray(), 0xED, 0xA0, 0x80, .. "\", \"steps\": 2}"u8.ToArray()], // an encoded surrogate
    };

    /// <summary>The generation routes' body limit as the server states it (<c>GET /v1/models</c>
    /// <c>limits.max_body_bytes</c>; automatic by default, from the model's image size).</summary>
    public static async Task<int> BodyLimitAsync(HttpClient client) =>
        JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0]
            .GetProperty("limits").GetProperty("max_body_bytes").GetInt32();

    /// <summary>Raw-socket cases across every POST endpoint (with the admin key when one is given, so admin bodies are
    /// read): malformed and truncated chunked framing, a declared length never reached, oversize bodies, stalled bodies
    /// (one in <paramref name="stallEvery"/>, each lasting the server's body timeout), invalid UTF-8 in keys and values.
    /// <see cref="RawCase.Expected"/> is the status where only one is right.</summary>
    /// <param name="maxBody">The generation routes' body limit (<see cref="BodyLimitAsync"/>): oversize bodies exceed it.</param>
    public static IReadOnlyList<RawCase> GenerateRaw(int count, int seed, string? adminKey, int maxBody, int stallEvery = 40)
    {
        var rng = new Random(seed);
        var cases = new List<RawCase>(count);
        string valid = """{"class_label": 1, "prompt": "1", "steps": 2, "dataset": "none", "output": "x"}""";
        while (cases.Count < count)
        {
            string path = Pick(rng, PostEndpoints);
            bool admin = path.StartsWith("/v1/admin", StringComparison.Ordinal);
            // A body on a path that refuses before reading (a wrong admin id: 404; no key: 401) still gets a 4xx, not a fixed one.
            bool reads = !admin || (adminKey is not null && path == "/v1/admin/training/jobs");
            string? auth = admin && adminKey is not null && rng.Next(6) > 0 ? adminKey : null;
            reads &= !admin || auth is not null;
            int? Exact(int status) => reads ? status : null;
            byte[] Head(string framing) => Encoding.ASCII.GetBytes(
                $"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " +
                    $"application/json\r\n{(auth is null ? "" : $"Authorization: Bearer {auth}\r\n")}{framing}\r\n");
            const string Chunked = "Transfer-Encoding: chunked\r\n";
            static byte[] B(string text) => Encoding.UTF8.GetBytes(text);
            string chunk = $"{Encoding.UTF8.GetByteCount(valid):X}\r\n{valid}\r\n";
            if (cases.Count % stallEvery == stallEvery - 1)
            {
                // Slow senders: part of the body, then silence until the server's body timeout answers 408.
                var body = B(valid);
                cases.Add(rng.Next(2) == 0
                    ? new RawCase("slow content-length", path, Head($"Content-Length: {body.Length}\r\n"), body[..(body.Length / 2)], false, Exact(408))
                    : new RawCase("slow chunked", path, Head(Chunked), B($"{body.Length:X}\r\n{valid[..10]}"), false, Exact(408)));
                continue;
            }
            cases.Add(rng.Next(14) switch
            {
                0 => new RawCase("chunked: bad size", path, Head(Chunked), B($"ZZ\r\n{valid}\r\n0\r\n\r\n"), false, Exact(400)),
                1 => new RawCase("chunked: size overflow", path, Head(Chunked), B($"FFFFFFFFFFFFFFFFFFFFFF\r\n{valid}\r\n0\r\n\r\n"), false, Exact(400)),
                2 => new RawCase("chunked: no CRLF after data", path, Head(Chunked), B($"{Encoding.UTF8.GetByteCount(valid):X}\r\n{valid}XY0\r\n\r\n"), false,
                    Exact(400)),
                3 => new RawCase("chunked: cut off in a chunk", path, Head(Chunked), B($"{Encoding.UTF8.GetByteCount(valid) + 40:X}\r\n{valid}"), true, null),
                4 => new RawCase("chunked: cut off before the last chunk", path, Head(Chunked), B(chunk), true, null),
                5 => new RawCase("chunked: control byte in an extension", path, Head(Chunked),
                    B($"{Encoding.UTF8.GetByteCount(valid):X};\u0001\r\n{valid}\r\n0\r\n\r\n"), false, null),
                6 => new RawCase("chunked: over the size limit", path, Head(Chunked),
                    B(string.Concat(Enumerable.Repeat($"1000\r\n{new string(' ', 4096)}\r\n", admin ? 20 : maxBody / 4096 + 2))
                        + "0\r\n\r\n"), false, Exact(413)),
                7 => new RawCase("content-length: cut off", path, Head("Content-Length: 400\r\n"), B(valid), true, null),
                8 => new RawCase("content-length: huge", path, Head("Content-Length: 100000000\r\n"), B(valid), false, Exact(413)),
                9 => new RawCase("content-length and chunked", path, Head($"Content-Length: 5\r\n{Chunked}"), B(chunk + "0\r\n\r\n"), false, null),
                10 => new RawCase("content-length: negative", path, Head("Content-Length: -1\r\n"), B(valid), false, null),
                11 => new RawCase("invalid UTF-8 in a key", path, Head($"Content-Length: {valid.Length + 2}\r\n"),
                    [.. "{\""u8.ToArray(), 0xC3, 0x28, .. B(valid[1..])], false, Exact(400)),
                12 => new RawCase("invalid UTF-8 in a value, chunked", path, Head(Chunked),
                    [.. B($"{valid.Length + 1:X}\r\n"), .. B(valid[..16]), 0xFF, .. B(valid[16..]), .. B("\r\n0\r\n\r\n")], false, Exact(400)),
                _ => new RawCase("garbage after the body", path, Head($"Content-Length: {valid.Length}\r\n"), B(valid + "\r\nGARBAGE / HTTP/9\r\n\r\n"), false,
                    null),
            });
        }
        return cases;
    }

    /// <summary>Sends raw cases to <paramref name="address"/> (<paramref name="parallelism"/> at a time). A violation is a
    /// 5xx, no answer within <paramref name="timeout"/>, a connection closed without an answer, a 4xx app answer that is
    /// not problem+json (OpenAI's JSON error on its routes), or another status than the one <see cref="RawCase.Expected"/> names. Kestrel's own empty 400
    /// for a request it refuses before the app (bad framing headers) counts as an answer. Abandoned cases have no answer
    /// (status -1); what the server made of them shows in its log, which the caller checks.</summary>
    public static async Task<Report> RunRawAsync(Uri address, IReadOnlyList<RawCase> cases, int parallelism, TimeSpan timeout)
    {
        var tally = new Tally();
        int protocol = 0;
        using var gate = new SemaphoreSlim(parallelism);
        await Task.WhenAll(cases.Select(async c =>
        {
            await gate.WaitAsync();
            try
            {
                var (status, type, body, error) = await SendRawAsync(address, c, timeout);
                string? problem = error;
                if (c.Abandon) { }
                else if (problem is null)
                {
                    if (status >= 500) problem = $"{status}";
                    else if (status is < 400 or >= 500) problem = $"{status} (expected 4xx)";
                    else if (c.Expected is int expected && status != expected) problem = $"{status} (expected {expected})";
                    else if (type is null && body.Length == 0 && status == 400) Interlocked.Increment(ref protocol);
                    else if (NotErrorBody(c.Path, status, type, Encoding.UTF8.GetBytes(body)) is { } wrong)
                        problem = $"{wrong}: {body[..Math.Min(body.Length, 80)]}";
                }
                tally.Add(status, problem, c);
            }
            finally { gate.Release(); }
        }));
        return tally.Report(cases.Count, protocol);
    }

    /// <summary>True when <paramref name="body"/> is the error body <paramref name="path"/> speaks: OpenAI's error object on
    /// the OpenAI-style routes, problem+json with the same status everywhere else.</summary>
    public static bool IsErrorBody(string path, int status, string? contentType, string body) =>
        NotErrorBody(path, status, contentType, Encoding.UTF8.GetBytes(body)) is null;

    /// <summary>What keeps <paramref name="body"/> from being the error body <paramref name="path"/> speaks, or null when it is one.</summary>
    private static string? NotErrorBody(string path, int status, string? contentType, byte[] body)
    {
        bool openAI = OpenAIRoute(path);
        if (contentType != ErrorMediaType(path)) return $"{status} with content type {contentType ?? "none"}{(openAI ? " (OpenAI route)" : "")}";
        if (openAI ? !IsOpenAIError(body) : !IsProblem(body, status))
            return $"{status} with a body that is not {(openAI ? "OpenAI's error object" : "a problem object")}";
        return null;
    }

    /// <summary>Writes one raw case and reads the answer's status line, content type and body (0 status: none).</summary>
    public static async Task<(int Status, string? ContentType, string Body, string? Error)> SendRawAsync(Uri address, RawCase c, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(address.Host), address.Port), cts.Token);
            await socket.SendAsync(c.Head, SocketFlags.None, cts.Token);
            try { await socket.SendAsync(c.Body, SocketFlags.None, cts.Token); }
            catch (SocketException) { } // the server answered and closed before the whole body was sent: read what it said
            if (c.Abandon)
            {
                await Task.Delay(100, cts.Token); // the server is reading the body by now
                socket.Close();
                return (-1, null, "", null);
            }
            var received = new MemoryStream();
            var buffer = new byte[16384];
            while (true)
            {
                int n;
                try { n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token); }
                catch (SocketException) when (received.Length > 0) { break; } // reset after the answer
                if (n == 0) break;
                received.Write(buffer, 0, n);
                if (Complete(received.GetBuffer().AsSpan(0, (int)received.Length))) break;
            }
            var text = Encoding.Latin1.GetString(received.GetBuffer(), 0, (int)received.Length);
            if (!text.StartsWith("HTTP/1.1 ", StringComparison.Ordinal) || text.Length < 12)
                return (0, null, "", received.Length == 0 ? "connection closed without an answer" : $"not an HTTP answer: {text[..Math.Min(40, text.Length)]}");
            int status = int.Parse(text.AsSpan(9, 3), System.Globalization.CultureInfo.InvariantCulture);
            int split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            var headers = split < 0 ? text : text[..split];
            string? type = headers.Split("\r\n").Where(h => h.StartsWith("Content-Type:", StringComparison.OrdinalIgnoreCase))
                .Select(h => h[13..].Split(';')[0].Trim()).FirstOrDefault();
            var body = split < 0 ? "" : text[(split + 4)..];
            if (headers.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase)) body = Dechunk(body);
            // The text was read as Latin-1 to find the framing; the body is UTF-8.
            return (status, type, Encoding.UTF8.GetString(Encoding.Latin1.GetBytes(body)), null);
        }
        catch (OperationCanceledException) { return (0, null, "", $"no answer within {timeout.TotalSeconds:F0} s"); }
        catch (SocketException e) { return (0, null, "", $"connection failed: {e.Message}"); }
    }

    /// <summary>The payload of a chunked answer (hex size line, data, CRLF, … 0).</summary>
    private static string Dechunk(string chunked)
    {
        var payload = new StringBuilder();
        int at = 0;
        while (at < chunked.Length)
        {
            int eol = chunked.IndexOf("\r\n", at, StringComparison.Ordinal);
            if (eol < 0) break;
            int size = Convert.ToInt32(chunked[at..eol].Split(';')[0].Trim(), 16);
            if (size == 0) break;
            payload.Append(chunked, eol + 2, Math.Min(size, chunked.Length - eol - 2));
            at = eol + 2 + size + 2;
        }
        return payload.ToString();
    }

    /// <summary>True once the head and a Content-Length body (or a chunked body's last chunk) are in.</summary>
    private static bool Complete(ReadOnlySpan<byte> data)
    {
        int split = data.IndexOf("\r\n\r\n"u8);
        if (split < 0) return false;
        var head = Encoding.Latin1.GetString(data[..split]);
        foreach (var line in head.Split("\r\n"))
            if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                return data.Length - split - 4 >= int.Parse(line[15..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        return head.Contains("chunked", StringComparison.OrdinalIgnoreCase) && data.EndsWith("0\r\n\r\n"u8);
    }

    /// <summary>What the server answered to the cases.</summary>
    /// <summary>Counts answers by status class and keeps the first 20 violations, for both runners (thread-safe).</summary>
    private sealed class Tally
    {
        private readonly System.Diagnostics.Stopwatch started = System.Diagnostics.Stopwatch.StartNew();
        private readonly Dictionary<int, int> byStatus = new();
        private readonly List<string> failures = new();
        private int ok, client4, server5, violations;

        public void Add(int status, string? problem, object c)
        {
            lock (failures)
            {
                byStatus[status] = byStatus.GetValueOrDefault(status) + 1;
                if (status is >= 200 and < 300) ok++;
                else if (status is >= 400 and < 500) client4++;
                else if (status >= 500) server5++;
                if (problem is null) return;
                violations++;
                if (failures.Count < 20) failures.Add($"{problem} ← {c}");
            }
        }

        public Report Report(int cases, int protocol) =>
            new(cases, ok, client4, server5, violations, byStatus, failures, started.Elapsed, protocol);
    }

    public sealed record Report(int Cases, int Status2xx, int Status4xx, int Status5xx, int Violations, IReadOnlyDictionary<int, int> ByStatus,
        IReadOnlyList<string> Failures, TimeSpan Elapsed, int ProtocolRejects);

    /// <summary>Sends every case (<paramref name="parallelism"/> at a time) and checks each answer; a violation is a 5xx,
    /// a 4xx that is not problem+json, another status class, or no answer within <paramref name="timeout"/>.</summary>
    /// <param name="protocolRejects">Over a real socket: accept Kestrel's own empty 400 for requests it rejects before the
    /// app runs (a NUL in the path, non-ASCII header bytes); counted in <see cref="Report.ProtocolRejects"/>.</param>
    public static async Task<Report> RunAsync(HttpClient client, IReadOnlyList<FuzzCase> cases, int parallelism, TimeSpan timeout,
        bool protocolRejects = false)
    {
        var tally = new Tally();
        int protocol = 0;
        using var gate = new SemaphoreSlim(parallelism);
        await Task.WhenAll(cases.Select(async c =>
        {
            await gate.WaitAsync();
            try
            {
                string? problem = null;
                int status;
                try
                {
                    using var cts = new CancellationTokenSource(timeout);
                    using var request = c.ToRequest();
                    using var response = await client.SendAsync(request, cts.Token);
                    status = (int)response.StatusCode;
                    var body = await response.Content.ReadAsByteArrayAsync(cts.Token);
                    var type = response.Content.Headers.ContentType?.MediaType;
                    bool kestrel = protocolRejects && status == 400 && body.Length == 0 && type is null;
                    if (kestrel) Interlocked.Increment(ref protocol);
                    if (status >= 500) problem = $"{status}";
                    else if (kestrel) { }
                    else if (status is >= 400 and < 500 && c.Method != HttpMethod.Head) problem = NotErrorBody(c.Path, status, type, body);
                    else if (status is < 200 or >= 300 and < 400) problem = $"{status}";
                }
                catch (OperationCanceledException) { status = 0; problem = $"no answer within {timeout.TotalSeconds:F0} s"; }
                catch (HttpRequestException e) { status = 0; problem = $"connection failed: {e.Message} {e.InnerException?.Message}"; }
                tally.Add(status, problem, c);
            }
            finally { gate.Release(); }
        }));
        return tally.Report(cases.Count, protocol);
    }

    /// <summary>The media type of an error answer on <paramref name="path"/>: OpenAI's dialect on its routes.</summary>
    public static string ErrorMediaType(string path) => OpenAIRoute(path) ? "application/json" : "application/problem+json";

    private static bool OpenAIRoute(string path)
    {
        var route = path.Split('?')[0].TrimEnd('/');
        return route.Equals("/v1/images/generations", StringComparison.OrdinalIgnoreCase)
            || route.Equals("/v1/images/edits", StringComparison.OrdinalIgnoreCase)
            || route.Equals("/v1/images/variations", StringComparison.OrdinalIgnoreCase)
            || (route.StartsWith("/v1/models/", StringComparison.OrdinalIgnoreCase) && route.Length > "/v1/models/".Length);
    }

    private static bool IsOpenAIError(byte[] body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("error", out var e)
                && e.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String;
        }
        catch (JsonException) { return false; }
    }

    private static bool IsProblem(byte[] body, int status)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("status", out var s) && s.TryGetInt32(out var n) && n == status;
        }
        catch (JsonException) { return false; }
    }
}
