using System.Diagnostics;
using System.Net;
using System.Text;

namespace DiTServer.Bench.Evidence;

/// <summary>One reading of the server's memory: RSS, the worker's live tensors, and whether it still has work.</summary>
public readonly record struct MemorySample(long Rss, long LiveTensors, bool Busy);

/// <summary>A bounded soak: <c>n</c> requests (mostly valid and cheap, some invalid, some abandoned by their client)
/// from a few concurrent clients; memory sampled after a warm-up tenth and at the end, both with the server idle.</summary>
public static class Soak
{
    public sealed record Report(int Requests, IReadOnlyDictionary<int, int> ByStatus, int Abandoned, int Status5xx,
        MemorySample Baseline, MemorySample Final, long MaxRss, TimeSpan Elapsed)
    {
        public double RssGrowth => (double)Final.Rss / Baseline.Rss - 1;
        public long TensorGrowth => Final.LiveTensors - Baseline.LiveTensors;
    }

    public static async Task<Report> RunAsync(HttpClient client, int requests, int concurrency, int maxSteps, Func<Task<MemorySample>> sample,
        Action<string>? progress = null, double warmUpFraction = 0.1)
    {
        var byStatus = new Dictionary<int, int>();
        int abandoned = 0, next = 0;
        long maxRss = 0;
        var sw = Stopwatch.StartNew();
        int warm = Math.Max(concurrency, (int)(requests * warmUpFraction));
        await Phase(0, warm);
        var baseline = await Idle(sample);
        progress?.Invoke($"warm-up {warm} requests: RSS {baseline.Rss / 1e6:F1} MB, live tensors {baseline.LiveTensors}");
        int checkpoints = 10, chunk = Math.Max(1, (requests - warm) / checkpoints);
        for (int from = warm; from < requests; from += chunk)
        {
            await Phase(from, Math.Min(requests, from + chunk));
            var s = await sample();
            maxRss = Math.Max(maxRss, s.Rss);
            progress?.Invoke($"{Math.Min(requests, from + chunk)} requests: RSS {s.Rss / 1e6:F1} MB, live tensors {s.LiveTensors}, " +
                $"{sw.Elapsed.TotalSeconds:F0} s");
        }
        var final = await Idle(sample);
        maxRss = Math.Max(maxRss, final.Rss);
        int fives = byStatus.Where(kv => kv.Key >= 500).Sum(kv => kv.Value);
        return new Report(requests, byStatus, abandoned, fives, baseline, final, maxRss, sw.Elapsed);

        async Task Phase(int from, int to)
        {
            next = from;
            await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
            {
                while (true)
                {
                    int i = Interlocked.Increment(ref next) - 1;
                    if (i >= to) return;
                    int status = await One(client, i, maxSteps);
                    lock (byStatus)
                    {
                        if (status == 0) abandoned++;
                        else byStatus[status] = byStatus.GetValueOrDefault(status) + 1;
                    }
                }
            }));
        }
    }

    /// <summary>Request <paramref name="i"/> of the soak: a deterministic mix of cheap valid requests (PNG or JSON, one or
    /// two images, cfg 1 or 4, DDPM, DPM-Solver++ and UniPC), invalid ones (every 10th) and ones whose client leaves after
    /// 20 ms (every 25th); 0 = abandoned.</summary>
    private static async Task<int> One(HttpClient client, int i, int maxSteps)
    {
        // The solvers need at least their order (2) in steps; DDPM takes any count from 1.
        string sampler = (i / 10 % 3) switch { 0 => "ddpm", 1 => "dpmpp_2m", _ => "unipc" };
        int steps = sampler == "ddpm" ? 1 + i % maxSteps : 2 + i % Math.Max(1, maxSteps - 1);
        string body = i % 10 == 9
            ? $$"""{"class_label": {{i % 10}}, "steps": -{{i}}}"""
            : $$"""{"class_label": {{i % 10}}, "num_images": {{1 + i % 2}}, "steps": {{steps}}, "cfg_scale": """ +
                $$"""{{(i % 3 == 0 ? 1 : 4)}}, "seed": {{i}}, "sampler": "{{sampler}}"}""";
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (i % 2 == 0) request.Headers.Accept.ParseAdd("application/json");
        using var cts = i % 25 == 24 ? new CancellationTokenSource(TimeSpan.FromMilliseconds(20)) : new CancellationTokenSource(TimeSpan.FromMinutes(5));
        try
        {
            using var response = await client.SendAsync(request, cts.Token);
            _ = await response.Content.ReadAsByteArrayAsync(cts.Token);
            return (int)response.StatusCode;
        }
        catch (OperationCanceledException) when (i % 25 == 24) { return 0; }
    }

    /// <summary>Waits until the server has no active or queued work (abandoned requests leave at the next step), then samples.</summary>
    private static async Task<MemorySample> Idle(Func<Task<MemorySample>> sample)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var s = await sample();
            if (!s.Busy || DateTime.UtcNow > deadline) return s;
            await Task.Delay(50);
        }
    }
}
