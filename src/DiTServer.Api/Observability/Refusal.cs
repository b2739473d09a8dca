namespace DiTServer.Api.Observability;

/// <summary>Why a generation route turned a valid request away before it reached the engine. Whoever writes the refusal
/// marks it (<see cref="RefusalMark.Mark"/>), and <see cref="GenerationMetrics"/> labels the request from the mark, so the
/// outcome is never read back from the answer's status or title (two 503s differ only in their title).</summary>
public enum Refusal
{
    /// <summary>Every queue place is taken (503).</summary>
    QueueFull,
    /// <summary>This client holds its share of the queue already (429).</summary>
    ClientLimit,
    /// <summary>The server is stopping (503).</summary>
    ShuttingDown,
    /// <summary>The shared job store (Redis) cannot be reached (503).</summary>
    StoreUnavailable,
    /// <summary>Work that runs before the queue (class guesses for variations) is at its bound (503).</summary>
    Busy,
}

public static class RefusalMark
{
    private const string Key = "dit.refusal";

    /// <summary>Records why this request is refused; returns <paramref name="answer"/> so a refusal is marked where it is written.</summary>
    public static T Mark<T>(this HttpContext http, Refusal why, T answer)
    {
        http.Items[Key] = why;
        return answer;
    }

    public static Refusal? Of(HttpContext http) => http.Items.TryGetValue(Key, out var why) && why is Refusal r ? r : null;

    /// <summary>The <c>outcome</c> label of <c>dit_requests_total</c>.</summary>
    public static string Label(this Refusal why) => why switch
    {
        Refusal.QueueFull => "queue_full",
        Refusal.ClientLimit => "client_limit",
        Refusal.ShuttingDown => "shutting_down",
        Refusal.StoreUnavailable => "store_unavailable",
        Refusal.Busy => "busy",
        _ => throw new ArgumentOutOfRangeException(nameof(why), why, null),
    };
}
