using Prometheus;

namespace DiTServer.Api.Observability;

/// <summary>The engine's Prometheus metrics (scraped at <c>/metrics</c>); each device's worker reports through its own
/// <see cref="IServingObserver"/> (<see cref="ForDevice"/>), whose series carry a <c>device</c> label. Request counts
/// and latencies are <see cref="GenerationMetrics"/>'s.</summary>
public sealed class ServingMetrics(IReadOnlyList<string> servedDevices) : IServingObserver
{
    private static readonly string[] DeviceLabel = ["device"];
    private static readonly Gauge QueueDepth = Metrics.CreateGauge("dit_queue_depth", "Requests waiting in the queue");
    private static readonly Gauge ActiveRequests = Metrics.CreateGauge("dit_active_requests", "Requests being denoised", DeviceLabel);
    private static readonly Histogram ForwardRows = Metrics.CreateHistogram("dit_forward_rows", "Rows in one DiT forward (two per guided image)",
        new HistogramConfiguration { Buckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], LabelNames = DeviceLabel });
    private static readonly Histogram ForwardRequests = Metrics.CreateHistogram("dit_forward_requests", "Requests batched into one DiT forward",
        new HistogramConfiguration { Buckets = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64], LabelNames = DeviceLabel });
    private static readonly Histogram QueueWait = Metrics.CreateHistogram("dit_queue_wait_seconds", "Time from enqueue to admission",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 18), LabelNames = DeviceLabel });
    private static readonly Histogram StepDuration = Metrics.CreateHistogram("dit_step_duration_seconds",
        "One batched denoising step (forward + sampler updates)",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0005, 2, 18), LabelNames = DeviceLabel });
    private static readonly Gauge LiveTensors = Metrics.CreateGauge("dit_worker_live_tensors",
        "Tensors alive on the worker thread (flat after warm-up unless something leaks)", DeviceLabel);
    private static readonly Counter PausedSteps = Metrics.CreateCounter("dit_run_steps_paused_total",
        "Steps a running request sat out to share the forward with other clients (fair sharing)", DeviceLabel);
    private static readonly Counter RunSteps = Metrics.CreateCounter("dit_steps_total",
        "Denoising steps of requests: kind=full ran the DiT's blocks, kind=cached used the request's feature cache (cache_interval)",
        ["device", "kind"]);
    private static readonly Counter Images = Metrics.CreateCounter("dit_images_generated_total", "Images generated", DeviceLabel);
    private static readonly Counter WorkerErrors = Metrics.CreateCounter("dit_worker_errors_total",
        "Failures inside the worker (a request's step, decode or encode)", DeviceLabel);

    /// <summary>The shared queue's depth (endpoints call this right after enqueueing, before a worker reports).</summary>
    public void Queued(int depth) => QueueDepth.Set(depth);


    private readonly Lazy<DeviceMetrics> first = new(() => new DeviceMetrics(DeviceLabels.Of(servedDevices)[0]));

    /// <summary>The observer of one device's worker: its series carry <c>device="<paramref name="label"/>"</c>.</summary>
    public IServingObserver ForDevice(string label) => new DeviceMetrics(label);

    // As an observer itself, the metrics stand for the first (usually only) device.
    public void Admitted(TimeSpan queueWait) => first.Value.Admitted(queueWait);
    public void Forward(int rows, int requests, TimeSpan duration) => first.Value.Forward(rows, requests, duration);
    public void ImagesGenerated(int count) => first.Value.ImagesGenerated(count);
    public void WorkerError() => first.Value.WorkerError();
    public void WorkerTensors(long live) => first.Value.WorkerTensors(live);
    public void Paused(int runs) => first.Value.Paused(runs);
    public void Steps(int full, int cached) => first.Value.Steps(full, cached);
    public void Occupancy(int queued, int active) => first.Value.Occupancy(queued, active);

    private sealed class DeviceMetrics(string label) : IServingObserver
    {
        public void Admitted(TimeSpan queueWait) => QueueWait.WithLabels(label).Observe(queueWait.TotalSeconds);

        public void Forward(int rows, int requests, TimeSpan duration)
        {
            ForwardRows.WithLabels(label).Observe(rows);
            ForwardRequests.WithLabels(label).Observe(requests);
            StepDuration.WithLabels(label).Observe(duration.TotalSeconds);
        }

        public void ImagesGenerated(int count) => Images.WithLabels(label).Inc(count);
        public void WorkerError() => WorkerErrors.WithLabels(label).Inc();
        public void WorkerTensors(long live) => LiveTensors.WithLabels(label).Set(live);
        public void Paused(int runs) => PausedSteps.WithLabels(label).Inc(runs);

        public void Steps(int full, int cached)
        {
            if (full > 0) RunSteps.WithLabels(label, "full").Inc(full);
            if (cached > 0) RunSteps.WithLabels(label, "cached").Inc(cached);
        }

        public void Occupancy(int queued, int active)
        {
            QueueDepth.Set(queued); // one queue for all devices
            ActiveRequests.WithLabels(label).Set(active);
        }
    }
}
