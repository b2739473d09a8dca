using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Time.Testing;

namespace DiTServer.Core.Tests;

/// <summary>The scheduler without tensors: admission order, per-client limits, fair sharing of each forward, pausing,
/// timeouts, cancellation and weight swaps, all driven by hand: no worker thread, a fake clock, and the runner's outcome
/// written by the test.</summary>
public class SchedulerTests
{
    private readonly FakeTimeProvider clock = new();

    private static GenerationRequest Request(string client, int images, bool guided = true, int steps = 4,
        CancellationToken cancel = default, TimeSpan? timeout = null) =>
        new($"{client}-{Guid.NewGuid():N}", new GenerationParameters(0, images, new SamplingOptions { Steps = steps, CfgScale = guided ? 4 : 1 }),
            timeout ?? TimeSpan.FromHours(1), cancel) { Client = client };

    private Scheduler Make(int maxBatchRows = 32, int? maxRunningRows = null, BatchingMode mode = BatchingMode.Step, int capacity = 64,
        int? costCap = null) =>
        new(new ServingOptions
        {
            MaxBatchRows = maxBatchRows, MaxRunningRows = maxRunningRows, Batching = mode, MaxQueuedCostPerClient = costCap, QueueCapacity = capacity,
        }, devices: 1, clock);

    private static void Enqueue(Scheduler scheduler, params GenerationRequest[] requests)
    {
        foreach (var r in requests) Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(r));
    }

    /// <summary>What a runner that never fails reports: the runs of the batch that reached their last step finish.</summary>
    private static RunnerOutput Ran(SchedulerOutput plan, params ScheduledRun[] failing) =>
        new(failing.ToDictionary(r => r, _ => new RunFailure("generation failed", new InvalidOperationException("boom"))), [],
            plan.Batch.Where(r => !failing.Contains(r) && r.StepsDone + 1 >= r.TotalSteps).Select(r => (r, Array.Empty<byte[]>())).ToList());

    /// <summary>One step: schedule, run (nothing fails), update; returns the runs that finished.</summary>
    private static IReadOnlyList<ScheduledRun> Step(Scheduler scheduler) => Step(scheduler, scheduler.Schedule());

    private static IReadOnlyList<ScheduledRun> Step(Scheduler scheduler, SchedulerOutput plan) =>
        scheduler.Update(plan, Ran(plan)).Finished.Select(f => f.Run).ToList();

    [Fact]
    public void One_client_that_fits_one_forward_runs_every_request_every_step_in_order()
    {
        var scheduler = Make();
        var requests = new[] { Request("a", 2), Request("a", 4), Request("a", 1, guided: false) };
        Enqueue(scheduler, requests);
        var plan = scheduler.Schedule();
        Assert.Equal(requests, plan.Admitted.Select(r => r.Request));
        Assert.Equal(requests, plan.Batch.Select(r => r.Request));
        Assert.Equal(4 + 8 + 1, plan.BatchRows);
        Assert.Empty(plan.Ended);
        Assert.Equal(0, scheduler.Count);
    }

    [Fact]
    public void A_client_runs_at_most_one_forward_of_rows_and_a_second_client_is_admitted_beside_it()
    {
        var scheduler = Make(maxBatchRows: 32);
        var heavy = Enumerable.Range(0, 4).Select(_ => Request("flood", 8, steps: 1000)).ToArray(); // 16 rows each
        Enqueue(scheduler, heavy);
        var first = scheduler.Schedule();
        Assert.Equal(heavy[..2], first.Admitted.Select(r => r.Request));
        Step(scheduler, first);

        var light = Request("light", 1, steps: 4);
        Enqueue(scheduler, light);
        var second = scheduler.Schedule();
        Assert.Equal([light], second.Admitted.Select(r => r.Request));
        // The light run (least served) goes first; one heavy run fills the rest; the other heavy run pauses.
        Assert.Contains(second.Batch, r => r.Request == light);
        Assert.Equal(2, second.Batch.Count);
        Assert.True(second.BatchRows <= 32);
        Step(scheduler, second);
        Assert.Equal(1, scheduler.Running().Single(r => r.Request == heavy[1]).StepsPaused);
        Assert.Equal(2, scheduler.Count); // the flooder's other two still wait
    }

    [Fact]
    public void The_light_request_finishes_in_its_own_number_of_steps_while_a_flood_runs()
    {
        var scheduler = Make(maxBatchRows: 32);
        Enqueue(scheduler, Enumerable.Range(0, 6).Select(_ => Request("flood", 8, steps: 1000)).ToArray());
        Step(scheduler);
        var light = Request("light", 2, steps: 4);
        Enqueue(scheduler, light);
        int steps = 0;
        IReadOnlyList<ScheduledRun> finished = [];
        while (!finished.Any(r => r.Request == light))
        {
            finished = Step(scheduler);
            Assert.True(++steps <= 4, "the light request was paused");
        }
        Assert.Equal(4, steps);
    }

    [Fact]
    public void Runs_of_clients_that_do_not_fit_one_forward_take_turns()
    {
        var scheduler = Make(maxBatchRows: 16, maxRunningRows: 64);
        var a = Request("a", 8, steps: 10); // 16 rows: a whole forward
        var b = Request("b", 8, steps: 10);
        Enqueue(scheduler, a, b);
        var stepped = new Dictionary<GenerationRequest, int> { [a] = 0, [b] = 0 };
        for (int i = 0; i < 10; i++)
        {
            var plan = scheduler.Schedule();
            Assert.Single(plan.Batch);
            stepped[plan.Batch[0].Request]++;
            Step(scheduler, plan);
        }
        Assert.Equal(5, stepped[a]);
        Assert.Equal(5, stepped[b]);
    }

    [Fact]
    public void A_head_that_does_not_fit_blocks_admission_instead_of_being_skipped()
    {
        var scheduler = Make(maxBatchRows: 16, maxRunningRows: 24);
        Enqueue(scheduler, Request("a", 2), Request("b", 6)); // 4 + 12 rows run
        Step(scheduler);
        var large = Request("a", 6);  // 12 rows: a would run 16 (its limit), past the 24 running rows and past its half of them
        var small = Request("b", 1);  // 2 rows would fit, but b runs more than a: a's head comes first and is not skipped
        Enqueue(scheduler, large, small);
        Assert.Empty(scheduler.Schedule().Admitted);
        Assert.Equal(2, scheduler.Count);
    }

    [Fact]
    public void Feature_caches_count_toward_admission_memory_and_a_head_whose_cache_does_not_fit_waits()
    {
        const long rowBytes = 1000; // one row's hidden state on this device's model
        var scheduler = new Scheduler(new ServingOptions { MaxCacheBytes = 10_000, MaxQueuedCostPerClient = null }, devices: 1, clock);
        scheduler.SetCacheRowBytes(0, rowBytes);
        GenerationRequest Cached(string client, int images, int interval, CacheMode mode) =>
            new($"{client}-{Guid.NewGuid():N}", new GenerationParameters(0, images, new SamplingOptions
            {
                Steps = 4, CfgScale = 4, CacheInterval = interval, CacheMode = mode,
            }), TimeSpan.FromHours(1), default) { Client = client };
        var taylor = Cached("a", 2, 3, CacheMode.Taylor);  // 4 rows × 1000 × 2 = 8000 bytes
        var reuse = Cached("b", 2, 3, CacheMode.Reuse);    // 4 rows × 1000 = 4000: 12,000 would pass the 10,000
        var plain = Cached("c", 4, 1, CacheMode.Taylor);   // no caching: 0 bytes, whatever the mode says
        Assert.Equal(8000, taylor.Parameters.CacheBytes(rowBytes));
        Assert.Equal(4000, reuse.Parameters.CacheBytes(rowBytes));
        Assert.Equal(0, plain.Parameters.CacheBytes(rowBytes));

        Enqueue(scheduler, taylor, reuse, plain);
        var first = scheduler.Schedule();
        // Rows would fit (4 + 4 + 8 of 128), but b's cache does not, and its head blocks c's behind it (no skipping).
        Assert.Equal([taylor], first.Admitted.Select(r => r.Request));
        Assert.Equal(8000, first.Admitted.Single().CacheBytes);
        Step(scheduler, first);
        Assert.Empty(scheduler.Schedule().Admitted);
        while (scheduler.Running().Count > 0) Step(scheduler);
        var second = scheduler.Schedule();
        Assert.Equal([reuse, plain], second.Admitted.Select(r => r.Request));

        // Alone on the device a request is admitted even past the limit, or it could never run.
        var huge = new Scheduler(new ServingOptions { MaxCacheBytes = 1 }, devices: 1, clock);
        huge.SetCacheRowBytes(0, rowBytes);
        Enqueue(huge, Cached("a", 2, 2, CacheMode.Taylor), Cached("a", 1, 2, CacheMode.Reuse));
        Assert.Single(huge.Schedule().Admitted);
    }

    [Fact]
    public void Cancelled_and_expired_requests_leave_the_queue_and_the_running_set_with_their_reason()
    {
        var scheduler = Make();
        using var cancelRunning = new CancellationTokenSource();
        var running = Request("a", 1, cancel: cancelRunning.Token);
        Enqueue(scheduler, running);
        Step(scheduler);

        using var cancelQueued = new CancellationTokenSource();
        var queued = Request("b", 1, cancel: cancelQueued.Token);
        var expired = Request("c", 1, timeout: TimeSpan.FromSeconds(10));
        Enqueue(scheduler, queued, expired);
        cancelQueued.Cancel(); // leaves the queue at once (the scheduler's own callback)
        Assert.True(queued.Completion.IsCanceled);
        Assert.Null(scheduler.PositionOf(queued));
        cancelRunning.Cancel(); // no inbox in this test: the abort is noted for the next schedule
        clock.Advance(TimeSpan.FromSeconds(11)); // past the deadline of c (and not of a, which has an hour)

        var plan = scheduler.Schedule();
        Assert.Empty(plan.Batch);
        Assert.Empty(scheduler.Running());
        var ended = plan.Ended.ToDictionary(e => e.Request);
        Assert.Equal(2, ended.Count); // the cancelled waiting request was answered at once, not again here
        Assert.Null(ended[running].Error);
        Assert.NotNull(ended[running].Run);
        Assert.Equal(GenerationFailure.Timeout, ended[expired].Error!.Failure);
        Assert.Null(ended[expired].Run);
    }

    [Fact]
    public void A_running_request_times_out_on_the_clock_with_the_steps_it_had_done()
    {
        var scheduler = Make();
        var slow = Request("a", 1, steps: 10, timeout: TimeSpan.FromSeconds(30));
        Enqueue(scheduler, slow);
        Step(scheduler);
        Step(scheduler);
        clock.Advance(TimeSpan.FromSeconds(29));
        Assert.Single(scheduler.Schedule().Batch); // not yet
        clock.Advance(TimeSpan.FromSeconds(2));
        var ended = Assert.Single(scheduler.Schedule().Ended);
        Assert.Equal(GenerationFailure.Timeout, ended.Error!.Failure);
        Assert.Contains("2 of 10 steps", ended.Error.Message);
    }

    [Fact]
    public void Request_mode_admits_only_into_an_empty_batch()
    {
        var scheduler = Make(mode: BatchingMode.Request);
        Enqueue(scheduler, Request("a", 1, steps: 2));
        Step(scheduler);
        Enqueue(scheduler, Request("b", 1, steps: 2));
        var plan = scheduler.Schedule();
        Assert.Empty(plan.Admitted);
        Assert.Single(Step(scheduler, plan)); // a finishes
        Assert.Single(scheduler.Schedule().Admitted);
    }

    [Fact]
    public void Runs_finish_after_their_steps_and_failed_runs_leave_at_once_with_their_reason()
    {
        var scheduler = Make();
        Enqueue(scheduler, Request("a", 1, steps: 2), Request("a", 1, steps: 3));
        var plan = scheduler.Schedule();
        var failing = plan.Batch[1];
        var update = scheduler.Update(plan, Ran(plan, failing));
        Assert.Empty(update.Finished);
        var failed = Assert.Single(update.Ended);
        Assert.Same(failing, failed.Run);
        Assert.Equal(GenerationFailure.Error, failed.Error!.Failure);
        Assert.Equal("generation failed: boom", failed.Error.Message);
        Assert.Single(scheduler.Running());
        var done = Step(scheduler);
        Assert.Equal(2, Assert.Single(done).StepsDone);
        Assert.Empty(scheduler.Running());
    }

    [Fact]
    public void A_runner_that_finishes_a_run_early_is_a_bug_the_scheduler_refuses()
    {
        var scheduler = Make();
        Enqueue(scheduler, Request("a", 1, steps: 3));
        var plan = scheduler.Schedule();
        var early = new RunnerOutput(new Dictionary<ScheduledRun, RunFailure>(), [], [(plan.Batch[0], Array.Empty<byte[]>())]);
        Assert.Throws<InvalidOperationException>(() => scheduler.Update(plan, early));
    }

    [Fact]
    public void Closing_refuses_new_requests_and_ends_the_waiting_ones_while_running_ones_finish()
    {
        var scheduler = Make(maxBatchRows: 2, maxRunningRows: 2);
        var running = Request("a", 1, steps: 2);
        Enqueue(scheduler, running, Request("a", 1), Request("a", 1));
        Step(scheduler);
        scheduler.Close();
        Assert.Equal(EnqueueResult.Closed, scheduler.TryAdd(Request("d", 1)));
        var plan = scheduler.Schedule();
        Assert.Equal(2, plan.Ended.Count);
        Assert.All(plan.Ended, e => Assert.Equal(GenerationFailure.ShuttingDown, e.Error!.Failure));
        Assert.Empty(plan.Admitted);
        Assert.Equal([running], plan.Batch.Select(r => r.Request));
        Assert.Single(Step(scheduler, plan));
        Assert.Equal(0, scheduler.Count);
    }

    [Fact]
    public void The_queue_limits_each_client_by_row_steps_not_by_requests()
    {
        var scheduler = Make(costCap: 1000);
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(Request("a", 4, steps: 100)));   // 800 row-steps
        Assert.Equal(EnqueueResult.ClientLimit, scheduler.TryAdd(Request("a", 2, steps: 100))); // 800 + 400 > 1000
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(Request("a", 1, steps: 50)));     // 800 + 100
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(Request("b", 8, steps: 1000)));   // another client; alone larger than the cap
        Assert.Equal(EnqueueResult.ClientLimit, scheduler.TryAdd(Request("b", 1, steps: 1)));
    }

    [Fact]
    public void A_cancelled_waiting_request_gives_its_place_back_at_once_and_never_runs()
    {
        var scheduler = Make(capacity: 2);
        using var cancel = new CancellationTokenSource();
        var first = Request("a", 1, cancel: cancel.Token);
        var second = Request("b", 1);
        Enqueue(scheduler, first, second);
        Assert.Equal(EnqueueResult.Full, scheduler.TryAdd(Request("c", 1)));
        Assert.Equal(2, scheduler.PositionOf(second));

        cancel.Cancel();
        Assert.True(first.Completion.IsCanceled);
        Assert.Equal(1, scheduler.Count);
        Assert.Null(scheduler.PositionOf(first));
        Assert.Equal(1, scheduler.PositionOf(second));
        var next = Request("c", 1);
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(next)); // the freed place is taken before any schedule

        var plan = scheduler.Schedule(); // it never runs and is not answered twice
        Assert.Equal([second, next], plan.Admitted.Select(r => r.Request));
        Assert.Empty(plan.Ended);
        Assert.Equal(0, scheduler.Count);
    }

    [Fact]
    public void A_request_whose_client_left_before_it_was_accepted_ends_cancelled_at_once()
    {
        var scheduler = Make();
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var gone = Request("a", 1, cancel: cancel.Token);
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(gone));
        Assert.True(gone.Completion.IsCanceled);
        Assert.Equal(0, scheduler.Count);
        Assert.Empty(scheduler.Schedule().Admitted);
    }

    [Fact]
    public void Positions_count_the_older_waiting_requests_of_every_client()
    {
        var scheduler = Make(maxBatchRows: 2, maxRunningRows: 2);
        var requests = new[] { Request("a", 1), Request("a", 1), Request("a", 1) };
        Enqueue(scheduler, requests);
        scheduler.Schedule(); // the first runs (the batch holds one guided image); the others wait
        Assert.Null(scheduler.PositionOf(requests[0]));
        var late = Request("c", 1);
        Enqueue(scheduler, late);
        Assert.Equal([1L, 2L, 3L], new[] { requests[1], requests[2], late }.Select(r => scheduler.PositionOf(r) ?? 0));
    }

    [Fact]
    public void A_waiting_request_times_out_while_admission_is_paused_for_a_swap()
    {
        var scheduler = Make();
        Enqueue(scheduler, Request("a", 1, steps: 5));
        Step(scheduler);
        scheduler.BeginSwap(0, new EngineMessage.Swap(new Dictionary<string, TorchSharp.torch.Tensor>(), "new"));
        var expired = Request("b", 1, timeout: TimeSpan.FromSeconds(5));
        Enqueue(scheduler, expired);
        clock.Advance(TimeSpan.FromSeconds(6));
        var plan = scheduler.Schedule();
        Assert.Empty(plan.Admitted);
        Assert.Null(plan.Swap); // a still runs
        Assert.Equal(GenerationFailure.Timeout, Assert.Single(plan.Ended).Error!.Failure);
        Assert.Equal(0, scheduler.Count);
    }

    [Fact]
    public void A_weight_swap_is_a_scheduler_state_the_running_requests_finish_then_the_swap_then_the_queued_ones_run()
    {
        var scheduler = Make();
        var log = new List<string>();
        Enqueue(scheduler, Request("a", 1, steps: 2));
        Step(scheduler);

        var swap = new EngineMessage.Swap(new Dictionary<string, TorchSharp.torch.Tensor>(), "new");
        scheduler.BeginSwap(0, swap);
        Assert.Throws<InvalidOperationException>(() => scheduler.BeginSwap(0, swap)); // one at a time
        Enqueue(scheduler, Request("b", 1, steps: 1));
        var plan = scheduler.Schedule();
        Assert.Empty(plan.Admitted);
        Assert.Null(plan.Swap);
        log.Add($"finished {Assert.Single(Step(scheduler, plan)).Client}");

        var swapping = scheduler.Schedule(); // nothing runs: the plan is the swap, and nothing else
        Assert.Same(swap, swapping.Swap);
        Assert.Empty(swapping.Admitted);
        Assert.Empty(swapping.Batch);
        log.Add("swap");
        Assert.Same(swap, scheduler.Schedule().Swap); // until the engine says it is over
        scheduler.EndSwap(0);
        var after = scheduler.Schedule();
        Assert.Null(after.Swap);
        log.Add($"admitted {Assert.Single(after.Admitted).Client}");
        Assert.Equal(["finished a", "swap", "admitted b"], log);
    }

    [Fact]
    public void A_running_request_cancelled_is_aborted_through_its_devices_inbox_at_the_next_step()
    {
        var scheduler = Make();
        var inbox = System.Threading.Channels.Channel.CreateUnbounded<EngineMessage>();
        scheduler.Connect(0, inbox.Writer);
        using var cancel = new CancellationTokenSource();
        var request = Request("a", 1, steps: 10, cancel: cancel.Token);
        Enqueue(scheduler, request);
        Assert.True(inbox.Reader.TryRead(out var added) && added is EngineMessage.Added); // an idle core looks for work
        Step(scheduler);
        cancel.Cancel();
        Assert.True(inbox.Reader.TryRead(out var message));
        var abort = Assert.IsType<EngineMessage.Abort>(message);
        Assert.Same(request, abort.Request);
        Assert.False(request.IsCompleted); // a running request is answered by its engine, after its rows leave
        scheduler.Abort(0, abort.Request);
        var ended = Assert.Single(scheduler.Schedule().Ended);
        Assert.Null(ended.Error);
        Assert.Empty(scheduler.Running());
    }

    [Fact]
    public void Two_devices_share_the_waiting_queue_and_each_runs_what_it_admitted()
    {
        var scheduler = new Scheduler(new ServingOptions { MaxBatchRows = 2, MaxRunningRows = 2, MaxQueuedCostPerClient = null }, devices: 2, clock);
        var a = Request("a", 1);
        var b = Request("a", 1);
        Enqueue(scheduler, a, b);
        var first = scheduler.Schedule(0);
        var second = scheduler.Schedule(1);
        Assert.Equal([a], first.Admitted.Select(r => r.Request));
        Assert.Equal([b], second.Admitted.Select(r => r.Request));
        Assert.Equal(1, second.Device);
        Assert.Equal(1, scheduler.Running(1).Single().Device);
        // One device ending (its loop crashed) fails its own runs; the queue stays for the other.
        Enqueue(scheduler, Request("c", 1));
        var ended = scheduler.EndAll(0, "the generation worker stopped");
        Assert.Equal([a], ended.Select(e => e.Request));
        Assert.Equal(1, scheduler.Count);
        Assert.Single(scheduler.EndAll(1, "stopped"), e => e.Run is null); // the last device: the queue ends too
    }

    [Theory]
    [InlineData("ddpm", 10, null)]
    [InlineData("ddim", 7, "[200, 700]")]
    [InlineData("unipc", 6, "[0, 500]")]
    [InlineData("dpmpp_2m", 5, "[300, 1000]")]
    [InlineData("ddpm", 250, "[100, 400]")]
    [InlineData("ddpm", 50, "[0, 300]", 0.7)]      // image to image: only the last 35 steps, from their own timestep
    [InlineData("unipc", 12, "[0, 400]", 0.5)]
    [InlineData("dpmpp_3m", 20, "[250, 600]", 0.35)]
    public void The_rows_the_scheduler_plans_are_the_rows_the_run_adds_at_every_step(string sampler, int steps, string? interval,
        double strength = 1.0)
    {
        var bounds = interval?.Trim('[', ']').Split(',').Select(double.Parse).ToArray();
        var options = new SamplingOptions
        {
            Sampler = SamplerNames.Samplers[sampler], Steps = steps, CfgScale = 4, Seed = 1,
            GuidanceInterval = bounds is null ? null : new GuidanceInterval(bounds[0], bounds[1]),
        };
        var planned = StepTimesteps.RowsPerStep(options, 2, strength);
        var timesteps = StepTimesteps.For(options, strength);
        var config = DiTServer.Core.Model.DiTConfig.Presets["DiT-S/8"] with { InputSize = 8 };
        var edit = strength == 1.0 ? null
            : new EditStart(new ImageEdit(new byte[8 * 8], 8, 1, strength), TorchSharp.torch.zeros(1, config.InChannels, 8, 8), null);
        using var run = new SamplingRun(null, config, [1, 2], options, TorchSharp.torch.CPU, edit);
        Assert.Equal(ImageEdit.StepsRun(steps, strength), run.TotalSteps);
        Assert.Equal(run.TotalSteps, timesteps.Length);
        for (int k = 0; k < run.TotalSteps; k++)
        {
            Assert.Equal(run.ModelTimestep, timesteps[k]);
            Assert.Equal(run.RowsThisStep, planned[k]);
            using var output = TorchSharp.torch.zeros(2, config.LearnSigma ? 2 * config.InChannels : config.InChannels, 8, 8);
            run.Advance(output);
        }
        if (bounds is not null) Assert.Contains(2, planned); // the interval really turned guidance off somewhere
    }

    private static GenerationRequest Tenant(string client, int images, int steps, double weight = 1, int? places = null) =>
        new($"{client}-{Guid.NewGuid():N}", new GenerationParameters(0, images, new SamplingOptions { Steps = steps, CfgScale = 4 }),
            TimeSpan.FromHours(1), CancellationToken.None) { Client = client, Share = new ClientShare(weight, MaxQueuedRequests: places) };

    [Theory]
    [InlineData(4)]
    [InlineData(16)]
    public void A_newcomer_is_admitted_at_the_next_step_and_finishes_in_its_own_steps_beside_many_heavy_clients(int heavy)
    {
        // The defaults: 32 rows a forward, 128 running. Each heavy client keeps a forward's worth running and more waiting.
        var scheduler = Make(capacity: 1000);
        for (int c = 0; c < heavy; c++)
            Enqueue(scheduler, Enumerable.Range(0, 3).Select(_ => Request($"heavy{c}", 8, steps: 1000)).ToArray());
        for (int i = 0; i < 2 * heavy; i++) Step(scheduler); // every heavy client has had its turns
        Assert.True(scheduler.RunningRows() >= 128, $"the heavy clients fill the running rows ({scheduler.RunningRows()})");

        var light = Request("light", 1, steps: 4);
        Enqueue(scheduler, light);
        var plan = scheduler.Schedule();
        Assert.Contains(plan.Admitted, r => r.Request == light);
        Assert.Contains(plan.Batch, r => r.Request == light); // its rows join the next forward
        int steps = 1;
        var finished = Step(scheduler, plan);
        while (!finished.Any(r => r.Request == light))
        {
            finished = Step(scheduler);
            Assert.True(++steps <= 4, "the newcomer was paused");
        }
    }

    [Fact]
    public void With_many_clients_each_gets_about_an_equal_share_of_the_forwards()
    {
        var scheduler = Make(capacity: 1000);
        var clients = Enumerable.Range(0, 5).Select(c => $"c{c}").ToArray();
        foreach (var c in clients) Enqueue(scheduler, Enumerable.Range(0, 3).Select(_ => Request(c, 8, steps: 1000)).ToArray());
        var rows = clients.ToDictionary(c => c, _ => 0);
        for (int i = 0; i < 200; i++)
        {
            var plan = scheduler.Schedule();
            foreach (var run in plan.Batch) rows[run.Client] += run.LastStepRows;
            Step(scheduler, plan);
        }
        double mean = rows.Values.Average();
        Assert.All(rows.Values, r => Assert.InRange(r, 0.8 * mean, 1.2 * mean));
    }

    [Theory]
    [InlineData(16)] // one heavy run fills a forward
    [InlineData(32)] // the default: two heavy runs share each forward
    public void A_client_of_weight_two_gets_about_twice_the_rows_of_a_client_of_weight_one(int maxBatchRows)
    {
        var scheduler = Make(maxBatchRows: maxBatchRows, maxRunningRows: 4 * maxBatchRows, capacity: 1000);
        Enqueue(scheduler, Enumerable.Range(0, 4).Select(_ => Tenant("gold", 8, steps: 1000, weight: 2)).ToArray());
        Enqueue(scheduler, Enumerable.Range(0, 4).Select(_ => Tenant("basic", 8, steps: 1000)).ToArray());
        var rows = new Dictionary<string, int> { ["gold"] = 0, ["basic"] = 0 };
        for (int i = 0; i < 300; i++)
        {
            var plan = scheduler.Schedule();
            foreach (var run in plan.Batch) rows[run.Client] += run.LastStepRows;
            Step(scheduler, plan);
        }
        Assert.InRange(rows["gold"] / (double)rows["basic"], 1.8, 2.2);
    }

    [Fact]
    public void One_client_cannot_take_every_queue_place_and_the_reserve_is_for_clients_with_nothing_queued()
    {
        // 16 places: 4 per client by default, 2 kept in reserve.
        var scheduler = new Scheduler(new ServingOptions { QueueCapacity = 16, MaxQueuedCostPerClient = 1_000_000 }, devices: 1, clock);
        Assert.Equal(4, Enumerable.Range(0, 10).Count(_ => scheduler.TryAdd(Request("flood", 8, steps: 1000)) == EnqueueResult.Accepted));
        int Take(string client) => Enumerable.Range(0, 10).Count(_ => scheduler.TryAdd(Request(client, 1)) == EnqueueResult.Accepted);
        Assert.Equal(4, Take("b"));
        Assert.Equal(4, Take("c"));
        Assert.Equal(2, Take("d")); // 14 waiting: the last 2 places are the reserve
        Assert.Equal(1, Take("e")); // a client with nothing queued may take a reserved place
        Assert.Equal(1, Take("f"));
        Assert.Equal(0, Take("g")); // full
        Assert.Equal(16, scheduler.Count);
    }

    [Fact]
    public void When_only_the_reserve_is_left_a_client_that_waits_gets_429_and_a_newcomer_gets_a_place()
    {
        var scheduler = new Scheduler(new ServingOptions { QueueCapacity = 8, QueueReserve = 2, MaxQueuedRequestsPerClient = 8 }, devices: 1, clock);
        Assert.Equal(6, Enumerable.Range(0, 10).Count(_ => scheduler.TryAdd(Request("flood", 1)) == EnqueueResult.Accepted));
        Assert.Equal(EnqueueResult.ClientLimit, scheduler.TryAdd(Request("flood", 1)));
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(Request("newcomer", 1)));
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(Request("another", 1)));
        Assert.Equal(EnqueueResult.Full, scheduler.TryAdd(Request("late", 1)));
    }

    [Fact]
    public void A_tenants_own_place_limit_replaces_the_servers()
    {
        var scheduler = new Scheduler(new ServingOptions { QueueCapacity = 64, MaxQueuedRequestsPerClient = 2 }, devices: 1, clock);
        Assert.Equal(5, Enumerable.Range(0, 10).Count(_ => scheduler.TryAdd(Tenant("big", 1, 4, places: 5)) == EnqueueResult.Accepted));
        Assert.Equal(2, Enumerable.Range(0, 10).Count(_ => scheduler.TryAdd(Tenant("small", 1, 4)) == EnqueueResult.Accepted));
    }
}
