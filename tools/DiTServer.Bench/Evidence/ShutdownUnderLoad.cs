using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace DiTServer.Bench.Evidence;

/// <summary>SIGTERM to a child server while some requests run and others wait in its queue, then a few more requests on
/// new connections: every request must be answered, 200 (finished) or 503 problem+json with <c>Retry-After</c> (not
/// started, or cut off when the drain time ran out), never a 500 or a dropped connection. A request sent after the
/// signal may also find the listener closed (refused, or reset while it waited in the kernel's accept queue as Kestrel
/// closed the socket: no server can answer those). The process must exit with 0.</summary>
public static class ShutdownUnderLoad
{
    public enum Kind
    {
        /// <summary>200 with the image.</summary>
        Finished,
        /// <summary>503 problem+json, <c>Retry-After</c>, detail "…was not started".</summary>
        NotStarted,
        /// <summary>503 problem+json, <c>Retry-After</c>, detail "…shut down before this request finished".</summary>
        CutOff,
        /// <summary>Any other 503 problem+json with <c>Retry-After</c> (e.g. a late request refused by the closed queue).</summary>
        Refused,
        /// <summary>A late request whose connection was refused, reset or closed before any answer: the listener had closed or was
        /// closing. Never allowed for a request sent before the signal.</summary>
        NotAccepted,
        /// <summary>Anything else: a 500, a 503 without Retry-After or problem+json, a dropped connection, no answer.</summary>
        Violation,
    }

    public sealed record Answer(bool Late, Kind Kind, string What);

    public sealed record Report(double RunningAtSignal, double QueuedAtSignal, IReadOnlyList<Answer> Answers, int ExitCode, TimeSpan ExitAfter)
    {
        public int Count(Kind kind, bool late = false) => Answers.Count(a => a.Kind == kind && a.Late == late);
        public IEnumerable<Answer> Violations => Answers.Where(a => a.Kind == Kind.Violation || (!a.Late && a.Kind == Kind.NotAccepted));

        public string Summary() => string.Create(CultureInfo.InvariantCulture,
            $"{RunningAtSignal} running and {QueuedAtSignal} queued at the signal: {Line(false)}; late: {Line(true)}; exit code {ExitCode} after " +
                $"{ExitAfter.TotalSeconds:F1} s");

        private string Line(bool late) => string.Join(", ", Enum.GetValues<Kind>()
            .Select(k => (k, n: Count(k, late))).Where(x => x.n > 0).Select(x => $"{x.k} {x.n}")) is { Length: > 0 } s ? s : "none";
    }

    /// <summary>Sends <paramref name="requests"/> guided one-image requests of <paramref name="steps"/> steps, waits until
    /// <paramref name="running"/> of them run and the rest are queued, sends SIGTERM, then <paramref name="late"/> more
    /// requests (each on a new connection, 20 ms apart); waits for every answer and for the process to exit.</summary>
    public static async Task<Report> RunAsync(ChildServer server, int requests, int steps, int running, int late, TimeSpan exitTimeout)
    {
        using var answerTimeout = new CancellationTokenSource(exitTimeout + TimeSpan.FromSeconds(30));
        var accepted = Enumerable.Range(0, requests).Select(i => Send(server.Client, i, steps, false, answerTimeout.Token)).ToList();

        var deadline = DateTime.UtcNow.AddSeconds(60);
        double active, queued;
        while (true)
        {
            active = await server.Metric("dit_active_requests");
            queued = await server.Metric("dit_queue_depth");
            if (active == running && queued == requests - running) break;
            if (DateTime.UtcNow > deadline || accepted.Any(t => t.IsCompleted))
                throw new TimeoutException($"expected {running} running and {requests - running} queued before the signal; saw {active} and {queued} (steps " +
                    $"too few for this machine?); see {server.LogPath}");
            await Task.Delay(20);
        }

        server.SendSigterm();
        var lateAnswers = new List<Task<Answer>>();
        for (int i = 0; i < late; i++)
        {
            lateAnswers.Add(SendOnNewConnection(server.Address, requests + i, steps, answerTimeout.Token));
            await Task.Delay(20);
        }
        var (exit, took) = await server.WaitForExitAsync(exitTimeout);
        var answers = (await Task.WhenAll(accepted)).Concat(await Task.WhenAll(lateAnswers)).ToList();
        return new Report(active, queued, answers, exit, took);
    }

    private static async Task<Answer> SendOnNewConnection(Uri address, int i, int steps, CancellationToken ct)
    {
        // A fresh connection, as a new client would open: a pooled one may be the idle keep-alive connection that Kestrel
        // closes at shutdown, and a request racing that close fails in the client however the server behaves.
        using var client = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero }) { BaseAddress = address };
        return await Send(client, i, steps, true, ct);
    }

    private static async Task<Answer> Send(HttpClient client, int i, int steps, bool late, CancellationToken ct)
    {
        var body = $$"""{"class_label": {{i % 10}}, "steps": {{steps}}, "cfg_scale": 4, "seed": {{i}}}""";
        try
        {
            using var response = await client.PostAsync("/v1/images", new StringContent(body, Encoding.UTF8, "application/json"), ct);
            var bytes = await response.Content.ReadAsByteArrayAsync(ct);
            var type = response.Content.Headers.ContentType?.MediaType;
            if (response.StatusCode == HttpStatusCode.OK && type == "image/png") return new(late, Kind.Finished, "200");
            string text = Encoding.UTF8.GetString(bytes);
            if (response.StatusCode != HttpStatusCode.ServiceUnavailable || type != "application/problem+json"
                || response.Headers.RetryAfter?.Delta is not { } retry || retry <= TimeSpan.Zero)
                return new(late, Kind.Violation, $"{(int)response.StatusCode} {type} Retry-After {response.Headers.RetryAfter}: {text}");
            var detail = JsonDocument.Parse(text).RootElement.GetProperty("detail").GetString() ?? "";
            var kind = detail.Contains("was not started", StringComparison.Ordinal) ? Kind.NotStarted
                : detail.Contains("before this request finished", StringComparison.Ordinal) ? Kind.CutOff
                : Kind.Refused;
            return new(late, kind, $"503: {detail}");
        }
        catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError)
        {
            return new(late, Kind.NotAccepted, $"connection refused: {e.Message}");
        }
        catch (HttpRequestException e) when (late && (e.HttpRequestError == HttpRequestError.ResponseEnded
            || e.InnerException is IOException { InnerException: SocketException { SocketErrorCode: SocketError.ConnectionReset } }))
        {
            // The connection closed before any byte of an answer: accepted by the kernel just as Kestrel closed its listener
            // (or its idle connections), so the request never reached the app; a request the app accepted is always answered.
            return new(late, Kind.NotAccepted, $"connection closed before any answer ({e.HttpRequestError}): {e.InnerException?.Message ?? e.Message}");
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException or JsonException)
        {
            return new(late, Kind.Violation,
                $"{e.GetType().Name} ({(e as HttpRequestException)?.HttpRequestError}): {e.Message} {e.InnerException?.GetType().Name}: " +
                $"{e.InnerException?.Message}");
        }
    }
}
