using System.Text;
using DiTServer.Bench.Evidence;

namespace DiTServer.Api.Tests;

/// <summary>Broken bodies on raw sockets against the real server (Kestrel parses the framing; WebApplicationFactory's
/// test server has none): every POST endpoint, admin included, answers 400 malformed, 408 too slow, 413 too large as
/// problem+json (OpenAI's error object on the OpenAI-style route), never 500, and logs one warning line per fault, no stack trace.</summary>
public sealed partial class BrokenBodyTests(BrokenBodyTests.Server server) : IClassFixture<BrokenBodyTests.Server>
{
    /// <summary>One child server for the class, with a 2 s body timeout and the admin API on.</summary>
    public sealed class Server : IAsyncLifetime
    {
        public const string Key = TrainingShutdown.AdminKeyValue;
        private readonly string root = Directory.CreateTempSubdirectory("dit-broken-body-").FullName;
        public ChildServer Child { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            var settings = TrainingShutdown.Settings(root, side: 28, classes: 10);
            settings["RequestBody__Timeout"] = "00:00:02";
            // One request line per request ("HTTP POST /v1/images responded 400"): the tests wait for those lines
            // instead of sleeping until the log has caught up.
            settings["Serilog__MinimumLevel__Default"] = "Information";
            Child = await ChildServer.StartAsync(Path.Combine(RepositoryPaths.Root, "models", "dit-fashion-mnist"), settings, TimeSpan.FromMinutes(1));
        }

        public async Task DisposeAsync()
        {
            await Child.DisposeAsync();
            Directory.Delete(root, recursive: true);
        }

        /// <summary>Reads the child's log until <paramref name="done"/> holds (its lines come through a pipe); the
        /// minute's limit only turns a line that never comes into a failure instead of a hang.</summary>
        public async Task<List<string>> WaitForLog(Func<List<string>, bool> done, string what, int skip = 0)
        {
            for (var waited = System.Diagnostics.Stopwatch.StartNew(); ; await Task.Delay(20))
            {
                var lines = File.ReadAllLines(Child.LogPath).ToList();
                if (done(lines)) return lines.Skip(skip).ToList();
                if (waited.Elapsed > TimeSpan.FromMinutes(1))
                    throw new TimeoutException($"the log never showed {what}; last lines:\n{string.Join("\n", lines.TakeLast(20))}");
            }
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"HTTP POST /v1/\S+ responded \d+")]
    private static partial System.Text.RegularExpressions.Regex RequestLine();

    private static readonly string[] Reading = ["/v1/images", "/v1/jobs", "/v1/images/generations", "/v1/admin/training/jobs"];

    private static RawCase Case(string path, string framing, string body, int? expected, bool abandon = false) => new(
        "test", path,
        Encoding.ASCII.GetBytes($"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer " +
            $"{Server.Key}\r\n{framing}\r\n"),
        Encoding.UTF8.GetBytes(body), abandon, expected);

    public static TheoryData<string, string> Endpoints()
    {
        var data = new TheoryData<string, string>();
        foreach (var path in Reading)
            foreach (var kind in new[] { "bad chunk size", "bad chunk extension", "too large chunked", "too large declared", "slow" })
                data.Add(path, kind);
        return data;
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task A_broken_body_is_4xx_problem_json(string path, string kind)
    {
        const string Chunked = "Transfer-Encoding: chunked\r\n";
        var c = kind switch
        {
            "bad chunk size" => Case(path, Chunked, "ZZ\r\n{}\r\n0\r\n\r\n", 400),
            "bad chunk extension" => Case(path, Chunked, "2;\u0001\r\n{}\r\n0\r\n\r\n", 400),
            "too large chunked" => Case(path, Chunked, string.Concat(Enumerable.Repeat($"1000\r\n{new string(' ', 4096)}\r\n", 20)) + "0\r\n\r\n", 413),
            "too large declared" => Case(path, "Content-Length: 100000000\r\n", "{}", 413),
            "slow" => Case(path, "Content-Length: 40\r\n", "{\"class_label\"", 408),
            _ => throw new ArgumentException(kind),
        };
        var (status, type, body, error) = await BadInputFuzzer.SendRawAsync(server.Child.Address, c, TimeSpan.FromSeconds(20));
        Assert.True(error is null, error);
        Assert.Equal(c.Expected, status);
        // problem+json, or OpenAI's error object on the OpenAI-style route.
        Assert.True(BadInputFuzzer.IsErrorBody(path, status, type, body), $"{type}: {body}");
    }

    [Fact]
    public async Task A_client_that_leaves_mid_body_costs_one_log_line_and_no_error()
    {
        int before = File.ReadAllLines(server.Child.LogPath).Length;
        foreach (var path in Reading)
        {
            foreach (var c in new[]
            {
                Case(path, "Transfer-Encoding: chunked\r\n", "40\r\n{\"class_label\": 1", null, abandon: true),
                Case(path, "Content-Length: 300\r\n", "{\"class_label\": 1", null, abandon: true),
            })
                await BadInputFuzzer.SendRawAsync(server.Child.Address, c, TimeSpan.FromSeconds(20));
        }
        // Each abandoned request ends on the server with its request line, after its fault line: wait for all eight.
        int abandoned = Reading.Length * 2;
        var log = await server.WaitForLog(l => l.Skip(before).Count(line => RequestLine().IsMatch(line)) >= abandoned,
            $"{abandoned} request lines for the abandoned bodies", before);
        Assert.Equal(abandoned, log.Count(l => l.Contains("Client fault 400 on POST") || l.Contains("Client closed the connection during POST")));
        Assert.DoesNotContain(log, l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        Assert.DoesNotContain(log, l => l.Contains(" ERR]") || l.Contains(" FTL]"));
        Assert.Equal(System.Net.HttpStatusCode.OK, (await server.Child.Client.GetAsync("/health/ready")).StatusCode);
    }

    [Theory]
    [InlineData("/v1/images/generations")]
    [InlineData("/v1/images")]
    [InlineData("/v1/jobs")]
    [InlineData("/v1/admin/training/jobs")]
    public async Task Invalid_utf8_in_a_field_name_is_400(string path)
    {
        byte[] body = [.. "{\""u8.ToArray(), 0xC3, 0x28, .. "\": 1, \"prompt\": \"1\"}"u8.ToArray()];
        var c = Case(path, $"Content-Length: {body.Length}\r\n", "", 400) with { Body = body };
        var (status, type, text, error) = await BadInputFuzzer.SendRawAsync(server.Child.Address, c, TimeSpan.FromSeconds(20));
        Assert.True(error is null, error);
        Assert.Equal(400, status);
        Assert.True(BadInputFuzzer.IsErrorBody(path, status, type, text), $"{type}: {text}");
        // An escaped lone surrogate as a name: valid UTF-8, valid JSON syntax, not text.
        var escaped = Case(path, "Content-Length: 21\r\n", "{\"\\ud800\": 1, \"n\": 1}", 400);
        Assert.Equal(400, (await BadInputFuzzer.SendRawAsync(server.Child.Address, escaped, TimeSpan.FromSeconds(20))).Status);
    }

    [Fact]
    public async Task Two_hundred_raw_fuzz_cases_get_4xx_and_the_log_holds_no_stack_trace()
    {
        var cases = BadInputFuzzer.GenerateRaw(200, seed: 3, Server.Key, await BadInputFuzzer.BodyLimitAsync(server.Child.Client), stallEvery: 25);
        var report = await BadInputFuzzer.RunRawAsync(server.Child.Address, cases, parallelism: 8, TimeSpan.FromSeconds(30));
        Assert.True(report.Violations == 0, $"{report.Violations} violations:\n{string.Join("\n", report.Failures)}");
        Assert.Equal(0, report.Status5xx);
        // The log arrives through a pipe, in order: once a request sent after the fuzz has its line, the fuzz's are there.
        var sentinel = $"/sentinel-{Guid.NewGuid():N}";
        await server.Child.Client.GetAsync(sentinel);
        var log = await server.WaitForLog(l => l.Any(line => line.Contains($"GET {sentinel} responded")), "the sentinel request's line");
        Assert.DoesNotContain(log, l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        Assert.DoesNotContain(log, l => l.Contains(" ERR]") || l.Contains(" FTL]"));
        Assert.Contains(log, l => l.Contains("Client fault 400"));
        Assert.Contains(log, l => l.Contains("Client fault 408"));
        Assert.Equal(System.Net.HttpStatusCode.OK, (await server.Child.Client.GetAsync("/health/ready")).StatusCode);
    }
}
