using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;

namespace DiTServer.Core.Tests;

/// <summary>The scheduler without tensors: admission order, per-client limits, fair sharing of each forward, pausing,
/// timeouts and cancellation, all driven by hand (no worker thread, no clock beyond the requests' own deadlines).</summary>
public class SchedulerTests
{
    private static GenerationRequest Request(string client, int images, bool guided = true, int steps = 4,
        CancellationToken cancel = default, TimeSpan? timeout = null) =>
        new($"{client}-{Guid.NewGuid():N}", new GenerationParameters(0, images, new SamplingOptions { Steps = steps, CfgScale = guided ? 4 : 1 }),
            timeout ?? TimeSpan.FromHours(1), cancel) { Client = client };

    private static (Scheduler Scheduler, GenerationQueue Queue) Make(int maxBatchRows = 32, int? maxRunningRows = null,
        BatchingMode mode = BatchingMode.Step, int capacity = 64, int? costCap = null)
    {
        var options = new ServingOptions { MaxBatchRows = maxBatchRows, MaxRunningRows = maxRunningRows, Batching = mode, MaxQueuedCostPerClient = costCap };
        var queue = new GenerationQueue(options.QueueCapacity > capacity ? capacity : options.QueueCapacity, costCap);
        return (new Scheduler(options, queue), queue);
    }

    private static void Enqueue(GenerationQueue queue, params GenerationRequest[] requests)
    {
        foreach (var r in requests) Assert.Equal(EnqueueResult.Accepted, queue.TryEnqueue(r));
    }

    private static readonly Dictionary<ScheduledRun, Exception> NoFailures = new();

    [Fact]
    public void One_client_that_fits_one_forward_runs_every_request_every_step_in_order()
    {
        var (scheduler, queue) = Make();
        var requests = new[] { Request("a", 2), Request("a", 4), Request("a", 1, guided: false) };
        Enqueue(queue, requests);
        var plan = scheduler.Schedule(admit: true);
        Assert.Equal(requests, plan.Admitted.Select(r => r.Request));
        Assert.Equal(requests, plan.Batch.Select(r => r.Request));
        Assert.Equal(4 + 8 + 1, plan.BatchRows);
        Assert.Empty(plan.Ended);
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public void A_client_runs_at_most_one_forward_of_rows_and_a_second_client_is_admitted_beside_it()
    {
        var (scheduler, queue) = Make(maxBatchRows: 32);
        var heavy = Enumerable.Range(0, 4).Select(_ => Request("flood", 8, steps: 1000)).ToArray(); // 16 rows each
        Enqueue(queue, heavy);
        var first = scheduler.Schedule(admit: true);
        Assert.Equal(heavy[..2], first.Admitted.Select(r => r.Request));
        scheduler.Update(first, NoFailures);

        var light = Request("light", 1, steps: 4);
        Enqueue(queue, light);
        var second = scheduler.Schedule(admit: true);
        Assert.Equal([light], second.Admitted.Select(r => r.Request));
        // The light run (least served) goes first; one heavy run fills the rest; the other heavy run pauses.
        Assert.Contains(second.Batch, r => r.Request == light);
        Assert.Equal(2, second.Batch.Count);
        Assert.True(second.BatchRows <= 32);
        scheduler.Update(second, NoFailures);
        Assert.Equal(1, scheduler.Running.Single(r => r.Request == heavy[1]).StepsPaused);
        Assert.Equal(2, queue.Count); // the flooder's other two still wait
    }

    [Fact]
    public void The_light_request_finishes_in_its_own_number_of_steps_while_a_flood_runs()
    {
        var (scheduler, queue) = Make(maxBatchRows: 32);
        Enqueue(queue, Enumerable.Range(0, 6).Select(_ => Request("flood", 8, steps: 1000)).ToArray());
        scheduler.Update(scheduler.Schedule(true), NoFailures);
        var light = Request("light", 2, steps: 4);
        Enqueue(queue, light);
        int steps = 0;
        IReadOnlyList<ScheduledRun> finished = [];
        while (!finished.Any(r => r.Request == light))
        {
            finished = scheduler.Update(scheduler.Schedule(true), NoFailures);
            Assert.True(++steps <= 4, "the light request was paused");
        }
        Assert.Equal(4, steps);
    }

    [Fact]
    public void Runs_of_clients_that_do_not_fit_one_forward_take_turns()
    {
        var (scheduler, queue) = Make(maxBatchRows: 16, maxRunningRows: 64);
        var a = Request("a", 8, steps: 10); // 16 rows: a whole forward
        var b = Request("b", 8, steps: 10);
        Enqueue(queue, a, b);
        var stepped = new Dictionary<GenerationRequest, int> { [a] = 0, [b] = 0 };
        for (int i = 0; i < 10; i++)
        {
            var plan = scheduler.Schedule(true);
            Assert.Single(plan.Batch);
            stepped[plan.Batch[0].Request]++;
            scheduler.Update(plan, NoFailures);
        }
        Assert.Equal(5, stepped[a]);
        Assert.Equal(5, stepped[b]);
    }

    [Fact]
    public void A_head_that_does_not_fit_blocks_admission_instead_of_being_skipped()
    {
        var (scheduler, queue) = Make(maxBatchRows: 16, maxRunningRows: 24);
        Enqueue(queue, Request("a", 8), Request("b", 8), Request("c", 1));
        var plan = scheduler.Schedule(true);
        // a (16 rows) is in; b (16) does not fit the 24 running rows, and c, behind it, is not let past.
        Assert.Single(plan.Admitted);
        Assert.Equal(2, queue.Count);
    }

    [Fact]
    public void Cancelled_and_expired_requests_leave_the_queue_and_the_running_set_with_their_reason()
    {
        var (scheduler, queue) = Make();
        using var cancelRunning = new CancellationTokenSource();
        var running = Request("a", 1, cancel: cancelRunning.Token);
        Enqueue(queue, running);
        scheduler.Update(scheduler.Schedule(true), NoFailures);

        using var cancelQueued = new CancellationTokenSource();
        var queued = Request("b", 1, cancel: cancelQueued.Token);
        var expired = Request("c", 1, timeout: TimeSpan.Zero);
        Enqueue(queue, queued, expired);
        cancelQueued.Cancel(); // leaves the queue at once (the queue's own callback)
        Assert.True(queued.Completion.IsCanceled);
        cancelRunning.Cancel();
        Thread.Sleep(1); // past the zero timeout's deadline

        var plan = scheduler.Schedule(true);
        Assert.Empty(plan.Batch);
        Assert.Empty(scheduler.Running);
        var ended = plan.Ended.ToDictionary(e => e.Request);
        Assert.Null(ended[running].Error);
        Assert.NotNull(ended[running].Run);
        Assert.Equal(GenerationFailure.Timeout, ended[expired].Error!.Failure);
        Assert.Null(ended[expired].Run);
    }

    [Fact]
    public void Request_mode_admits_only_into_an_empty_batch()
    {
        var (scheduler, queue) = Make(mode: BatchingMode.Request);
        Enqueue(queue, Request("a", 1, steps: 2));
        scheduler.Update(scheduler.Schedule(true), NoFailures);
        Enqueue(queue, Request("b", 1, steps: 2));
        var plan = scheduler.Schedule(true);
        Assert.Empty(plan.Admitted);
        Assert.Single(scheduler.Update(plan, NoFailures)); // a finishes
        Assert.Single(scheduler.Schedule(true).Admitted);
    }

    [Fact]
    public void Runs_finish_after_their_steps_and_failed_runs_leave_at_once()
    {
        var (scheduler, queue) = Make();
        Enqueue(queue, Request("a", 1, steps: 2), Request("a", 1, steps: 3));
        var plan = scheduler.Schedule(true);
        var failing = plan.Batch[1];
        Assert.Empty(scheduler.Update(plan, new Dictionary<ScheduledRun, Exception> { [failing] = new InvalidOperationException("boom") }));
        Assert.Single(scheduler.Running);
        var done = scheduler.Update(scheduler.Schedule(true), NoFailures);
        Assert.Equal(2, Assert.Single(done).StepsDone);
        Assert.Empty(scheduler.Running);
    }

    [Fact]
    public void Admission_pauses_when_asked_and_shutdown_drains_the_queue()
    {
        var (scheduler, queue) = Make();
        Enqueue(queue, Request("a", 1), Request("b", 1));
        Assert.Empty(scheduler.Schedule(admit: false).Admitted);
        var drained = scheduler.DrainQueue();
        Assert.Equal(2, drained.Count);
        Assert.All(drained, e => Assert.Equal(GenerationFailure.ShuttingDown, e.Error!.Failure));
    }

    [Fact]
    public void The_queue_limits_each_client_by_row_steps_not_by_requests()
    {
        var queue = new GenerationQueue(capacity: 64, maxQueuedCostPerClient: 1000);
        Assert.Equal(EnqueueResult.Accepted, queue.TryEnqueue(Request("a", 4, steps: 100)));   // 800 row-steps
        Assert.Equal(EnqueueResult.ClientLimit, queue.TryEnqueue(Request("a", 2, steps: 100))); // 800 + 400 > 1000
        Assert.Equal(EnqueueResult.Accepted, queue.TryEnqueue(Request("a", 1, steps: 50)));     // 800 + 100
        Assert.Equal(EnqueueResult.Accepted, queue.TryEnqueue(Request("b", 8, steps: 1000)));   // another client; alone larger than the cap
        Assert.Equal(EnqueueResult.ClientLimit, queue.TryEnqueue(Request("b", 1, steps: 1)));
    }

    [Fact]
    public void A_request_cancelled_in_the_inbox_gives_its_place_back_at_once_and_leaves_at_the_next_drain()
    {
        var (scheduler, queue) = Make(capacity: 2);
        using var cancel = new CancellationTokenSource();
        var first = Request("a", 1, cancel: cancel.Token);
        var second = Request("b", 1);
        Enqueue(queue, first, second);
        Assert.Equal(EnqueueResult.Full, queue.TryEnqueue(Request("c", 1)));
        Assert.Equal(2, queue.PositionOf(second));

        cancel.Cancel(); // still in the inbox: no worker has drained it
        Assert.True(first.Completion.IsCanceled);
        Assert.Equal(1, queue.Count);
        Assert.Null(queue.PositionOf(first));
        Assert.Equal(1, queue.PositionOf(second));

        var plan = scheduler.Schedule(admit: true); // the drain passes it over: it never runs and is not answered twice
        Assert.Equal([second], plan.Admitted.Select(r => r.Request));
        Assert.Empty(plan.Ended);
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public void A_place_freed_in_the_inbox_takes_a_new_request_before_any_worker_drains_it()
    {
        var (_, queue) = Make(capacity: 1);
        using var cancel = new CancellationTokenSource();
        Enqueue(queue, Request("a", 1, cancel: cancel.Token));
        cancel.Cancel();
        var next = Request("b", 1);
        Assert.Equal(EnqueueResult.Accepted, queue.TryEnqueue(next)); // the writer drains the dead request out of the bounded inbox
        Assert.Equal(1, queue.PositionOf(next));
    }

    [Fact]
    public void Positions_count_the_older_waiting_requests_across_the_inbox_and_the_client_queues()
    {
        var (scheduler, queue) = Make(maxBatchRows: 2, maxRunningRows: 2);
        var requests = new[] { Request("a", 1), Request("a", 1), Request("b", 1) };
        Enqueue(queue, requests);
        scheduler.Schedule(admit: true); // the first runs (the batch holds one guided image); the others are drained
        Assert.Null(queue.PositionOf(requests[0]));
        var late = Request("c", 1);
        Enqueue(queue, late); // still in the inbox
        Assert.Equal([1L, 2L, 3L], new[] { requests[1], requests[2], late }.Select(r => queue.PositionOf(r) ?? 0));
    }

    [Fact]
    public void A_waiting_request_times_out_while_admission_is_paused()
    {
        var (scheduler, queue) = Make();
        var expired = Request("a", 1, timeout: TimeSpan.Zero);
        Enqueue(queue, expired);
        Thread.Sleep(1);
        var plan = scheduler.Schedule(admit: false);
        Assert.Equal(GenerationFailure.Timeout, Assert.Single(plan.Ended).Error!.Failure);
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public void A_weight_swap_waits_for_the_running_requests_and_the_queued_ones_run_on_the_new_weights()
    {
        var (scheduler, queue) = Make();
        var log = new List<string>();
        var swapper = new WeightSwapper((_, description) => log.Add($"swap {description}"), Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        Enqueue(queue, Request("a", 1, steps: 2));
        scheduler.Update(scheduler.Schedule(admit: true), NoFailures);

        var swapped = swapper.Request(new Dictionary<string, TorchSharp.torch.Tensor>(), "new");
        var queued = Request("b", 1, steps: 1);
        Enqueue(queue, queued);
        // The loop's order (EngineCore): a pending swap closes admission while anything runs.
        Assert.True(swapper.TrySwap(scheduler.Running.Count));
        var plan = scheduler.Schedule(admit: false);
        Assert.Empty(plan.Admitted);
        var done = scheduler.Update(plan, NoFailures);
        log.Add($"finished {Assert.Single(done).Request.Client}");
        Assert.False(swapped.IsCompleted);

        Assert.False(swapper.TrySwap(scheduler.Running.Count)); // nothing runs: the swap happens now, then admission resumes
        Assert.True(swapped.IsCompletedSuccessfully);
        var after = scheduler.Schedule(admit: true);
        log.Add($"admitted {Assert.Single(after.Admitted).Request.Client}");
        Assert.Equal(["finished a", "swap new", "admitted b"], log);
    }
}
