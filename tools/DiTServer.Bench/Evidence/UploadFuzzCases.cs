using System.Text;
using DiTServer.Core.Imaging;

namespace DiTServer.Bench.Evidence;

/// <summary>Seeded malformed multipart uploads for OpenAI's <c>/v1/images/edits</c> and <c>/v1/images/variations</c>:
/// damaged, huge-claiming or missing PNGs, masks of other sizes, repeated and unknown parts, hostile field values and
/// broken multipart framing. <see cref="BadInputFuzzer.RunAsync"/> holds the answers to OpenAI's error object (or a 2xx
/// when a case is valid by chance: steps stay ≤ 2 so those are cheap).</summary>
public static class UploadFuzzCases
{
    private static readonly string[] Paths = ["/v1/images/edits", "/v1/images/variations"];

    private static readonly string[] Fields = ["prompt", "n", "size", "response_format", "strength", "seed", "steps", "user", "model",
        "negative_prompt", "image[]", "mask", "image", ""];

    private static readonly string[] Values =
    [
        "", " ", "0", "1", "-1", "2", "1.5", "1e308", "NaN", "Infinity", "0.000001", "1.0000001", "true", "null", "[1]", "{}", "[[[[[[1]]]]]]",
        "3", "zebra", "Sneaker", "😀", "\u0000", "\u202e", "16x16", "28x28", "1024x1024", "x", "b64_json", "url", "png",
        "9223372036854775808", new string('a', 5000), "../../etc/passwd", "<script>", "%s%n",
    ];

    /// <summary><paramref name="count"/> upload cases from <paramref name="seed"/>.</summary>
    public static IReadOnlyList<FuzzCase> Generate(int count, int seed)
    {
        var rng = new Random(seed ^ 0x0F1A);
        var cases = new List<FuzzCase>(count);
        while (cases.Count < count)
        {
            string path = Pick(rng, Paths), boundary = "fuzz" + rng.Next(1_000_000);
            var parts = new List<(string Header, byte[] Body)>();
            int kind = rng.Next(10);
            // The picture: usually a small valid PNG, else one of the ways a file goes wrong.
            if (kind != 0) parts.Add((File("image", Pick(rng, ["image.png", "😀.png", "../../x.png", "", "a\"b.png"])), Picture(rng)));
            if (rng.Next(4) == 0) parts.Add((File("mask", "mask.png"), Picture(rng)));
            if (rng.Next(8) == 0) parts.Add((File(Pick(rng, Fields), "x.png"), Picture(rng)));
            var fields = new Dictionary<string, string> { ["steps"] = "2", ["n"] = "1" };
            if (path.EndsWith("edits", StringComparison.Ordinal)) fields["prompt"] = "1";
            for (int i = rng.Next(0, 4); i > 0; i--)
            {
                var field = Pick(rng, Fields);
                if (rng.Next(6) == 0) fields.Remove(field);
                else fields[field] = Pick(rng, Values);
            }
            if (fields.TryGetValue("steps", out var s) && int.TryParse(s, out var steps) && steps > 2 && steps <= 1000) fields["steps"] = "2";
            foreach (var (name, value) in fields) parts.Add(($"Content-Disposition: form-data; name=\"{name}\"", Encoding.UTF8.GetBytes(value)));
            if (rng.Next(10) == 0) parts.Add(parts[rng.Next(parts.Count)]); // a repeated part
            var body = Multipart(boundary, parts, rng);
            string contentType = rng.Next(12) switch
            {
                0 => "multipart/form-data",                          // no boundary
                1 => $"multipart/form-data; boundary=other{boundary}", // the wrong one
                2 => "application/json",
                3 => $"multipart/mixed; boundary={boundary}",
                _ => $"multipart/form-data; boundary={boundary}",
            };
            cases.Add(new FuzzCase(kind == 0 ? "upload: no image" : "upload", HttpMethod.Post, path, body, contentType, null));
        }
        return cases;
    }

    private static string File(string name, string filename) =>
        $"Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: image/png";

    /// <summary>A PNG of 8, 16 or 28 pixels a side (gray, RGB or RGBA), or a damaged one.</summary>
    private static byte[] Picture(Random rng)
    {
        int side = Pick(rng, [8, 16, 28, 16]), channels = Pick(rng, [1, 3]);
        var pixels = new byte[side * (rng.Next(5) == 0 ? side / 2 : side) * channels];
        rng.NextBytes(pixels);
        var png = PngWriter.Encode(pixels, side, pixels.Length / side / channels, channels);
        switch (rng.Next(9))
        {
            case 0: return png[..rng.Next(1, png.Length)];                                    // truncated
            case 1:                                                                           // a header claiming 100000²
                var huge = (byte[])png.Clone();
                huge[16] = huge[20] = 0; huge[17] = huge[21] = 0x01; huge[18] = huge[22] = 0x86; huge[19] = huge[23] = 0xA0;
                return huge;
            case 2: var noise = new byte[rng.Next(1, 3000)]; rng.NextBytes(noise); return noise;
            case 3: return [.. png[..8], .. Encoding.ASCII.GetBytes("not a chunk at all")];  // signature, then garbage
            case 4: return [];
            default: return png;
        }
    }

    /// <summary>The parts in multipart framing, sometimes broken: no closing boundary, a part without headers, bare LF.</summary>
    private static byte[] Multipart(string boundary, List<(string Header, byte[] Body)> parts, Random rng)
    {
        using var stream = new MemoryStream();
        void Write(string text) => stream.Write(Encoding.UTF8.GetBytes(text));
        int damage = rng.Next(14);
        foreach (var (header, body) in parts)
        {
            Write($"--{boundary}\r\n");
            if (damage != 0) Write($"{header}\r\n");
            Write(damage == 1 ? "\n" : "\r\n");
            stream.Write(body);
            Write("\r\n");
        }
        if (damage != 2) Write($"--{boundary}--\r\n");
        return stream.ToArray();
    }

    private static T Pick<T>(Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];
}
