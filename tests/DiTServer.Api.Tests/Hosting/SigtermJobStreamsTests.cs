using System.Net;
using DiTServer.Bench.Evidence;

namespace DiTServer.Api.Tests;

/// <summary>SIGTERM to a real server process (demo model) while a job runs and another waits, each with an open
/// Server-Sent Events stream: both streams end with one final event (done, failed or cancelled) instead of being cut,
/// and the process exits 0. (Requests that arrive after the signal are ShutdownTests' part.)</summary>
public sealed class SigtermJobStreamsTests
{
    [Fact]
    public async Task Open_event_streams_end_with_a_final_event_and_the_process_exits_0()
    {
        var settings = new Dictionary<string, string>
        {
            // One guided image is 2 rows: the first job runs, the second waits in the queue.
            ["Serving__MaxBatchRows"] = "2", ["Serving__MaxImagesPerRequest"] = "1", ["Serving__IntraOpThreads"] = "1", ["Serving__WarmUp"] = "false",
        };
        await using var server = await ChildServer.StartAsync(Path.Combine(RepositoryPaths.Root, "models", "dit-fashion-mnist"), settings,
            TimeSpan.FromMinutes(1));
        var client = server.Client;
        const string Long = """{"class_label": 4, "num_images": 1, "steps": 1000, "cfg_scale": 4, "seed": 2}""";
        var (running, _, _) = await client.CreateJob(Long);
        var (queued, _, _) = await client.CreateJob(Long);

        var streams = new[] { Follow(server.Address, running), Follow(server.Address, queued) };
        // Each stream has sent its first event (the job's current state) before the signal: both are open.
        foreach (var s in streams) await s.Opened.Task.WaitAsync(TimeSpan.FromMinutes(1));

        server.SendSigterm();
        var (exitCode, _) = await server.WaitForExitAsync(TimeSpan.FromMinutes(1));
        var events = await Task.WhenAll(streams.Select(s => s.Events));

        foreach (var (list, id) in events.Zip(new[] { running, queued }))
        {
            Assert.NotEmpty(list);
            Assert.Contains(list[^1], new[] { "done", "failed", "cancelled" });
            Assert.Equal(1, list.Count(e => e is "done" or "failed" or "cancelled")); // one final event, then the stream ends
        }
        Assert.Equal(0, exitCode);
    }

    private sealed record Stream(TaskCompletionSource Opened, Task<List<string>> Events);

    /// <summary>Reads <c>/v1/jobs/{id}/events</c> to its end on its own connection; the event types in order.</summary>
    private static Stream Follow(Uri server, string id)
    {
        var opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task<List<string>> Read()
        {
            using var http = new HttpClient { BaseAddress = server, Timeout = TimeSpan.FromMinutes(2) };
            using var response = await http.GetAsync($"/v1/jobs/{id}/events", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var events = new List<string>();
            try
            {
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (!line.StartsWith("event: ", StringComparison.Ordinal)) continue;
                    events.Add(line["event: ".Length..]);
                    opened.TrySetResult();
                }
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                throw new InvalidOperationException($"job {id}'s event stream was cut after [{string.Join(", ", events)}]", e);
            }
            finally { opened.TrySetResult(); }
            return events;
        }
        return new Stream(opened, Read());
    }
}
