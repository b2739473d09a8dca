using DiTServer.Core.Serving;
using Prometheus;

namespace DiTServer.Api.Observability;

/// <summary>The engine's Prometheus metrics (scraped at <c>/metrics</c>); the worker reports through <see cref="IServingObserver"/>.
/// Request counts and latencies are <see cref="GenerationMetrics"/>'s.</summary>
public sealed class ServingMetrics : IServingObserver
{
    private static readonly Gauge QueueDepth = Metrics.CreateGauge("dit_queue_depth", "Requests waiting in the queue");
    private static readonly Gauge ActiveRequests = Metrics.CreateGauge("dit_active_requests", "Requests being denoised");
    private static readonly Histogram ForwardRows = Metrics.CreateHistogram("dit_forward_rows", "Rows in one DiT forward (two per guided image)",
        new HistogramConfiguration { Buckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] });
    private static readonly Histogram ForwardRequests = Metrics.CreateHistogram("dit_forward_requests", "Requests batched into one DiT forward",
        new HistogramConfiguration { Buckets = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64] });
    private static readonly Histogram QueueWait = Metrics.CreateHistogram("dit_queue_wait_seconds", "Time from enqueue to admission",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 18) });
    private static readonly Histogram StepDuration = Metrics.CreateHistogram("dit_step_duration_seconds", "One batched denoising step (forward + sampler updates)",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0005, 2, 18) });
    private static readonly Gauge LiveTensors = Metrics.CreateGauge("dit_worker_live_tensors", "Tensors alive on the worker thread (flat after warm-up unless something leaks)");
    private static readonly Counter Images = Metrics.CreateCounter("dit_images_generated_total", "Images generated");
    private static readonly Counter WorkerErrors = Metrics.CreateCounter("dit_worker_errors_total", "Failures inside the worker (a request's step, decode or encode)");

    public void Admitted(TimeSpan queueWait) => QueueWait.Observe(queueWait.TotalSeconds);

    public void Forward(int rows, int requests, TimeSpan duration)
    {
        ForwardRows.Observe(rows);
        ForwardRequests.Observe(requests);
        StepDuration.Observe(duration.TotalSeconds);
    }

    public void ImagesGenerated(int count) => Images.Inc(count);
    public void WorkerError() => WorkerErrors.Inc();
    public void WorkerTensors(long live) => LiveTensors.Set(live);

    public void Occupancy(int queued, int active)
    {
        QueueDepth.Set(queued);
        ActiveRequests.Set(active);
    }
}
