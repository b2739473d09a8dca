namespace DiTServer.Api.Admin;

/// <summary><c>Admin</c> and <c>Training</c> configuration. Without <c>Admin:ApiKeySha256</c> the admin routes do not exist.</summary>
public sealed class AdminOptions
{
    public const string Section = "Admin";

    /// <summary>SHA-256 (hex) of the admin bearer key: <c>echo -n "$KEY" | sha256sum</c>.</summary>
    public string? ApiKeySha256 { get; set; }
}

public sealed class TrainingApiOptions
{
    public const string Section = "Training";

    /// <summary>Datasets are named relative to this folder; nothing outside it can be read.</summary>
    public string DataRoot { get; set; } = "data";

    /// <summary>Training runs write here; nothing outside it can be written.</summary>
    public string OutputRoot { get; set; } = "runs";

    /// <summary>Largest model a job may train (parameters); checked before anything is allocated. DiT-XL/2 has 675 M.</summary>
    public double MaxParameters { get; set; } = 1e9;

    /// <summary>Largest estimated training memory of a job (weights, gradients, EMA, AdamW moments, activations for its
    /// batch size), in bytes; checked before anything is allocated.</summary>
    public double MaxMemoryBytes { get; set; } = 16L << 30;

    /// <summary>Largest admin request body (a job with a long class_names list fits); one byte more is 413.</summary>
    public int MaxBodyBytes { get; set; } = 65536;

    /// <summary>Largest image (width × height, from its header) a class-subfolder dataset may hold; a larger one is refused
    /// before it is decoded. Default 4096×4096.</summary>
    public long MaxImagePixels { get; set; } = DiTServer.Core.Training.DatasetScan.DefaultMaxImagePixels;

    /// <summary>Longest time a job's POST (or resume) may spend reading its dataset folder before it is refused with 400.</summary>
    public TimeSpan DatasetScanTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Longest wait of an activation for running requests to finish before it gives up.</summary>
    public TimeSpan ActivationTimeout { get; set; } = TimeSpan.FromMinutes(10);
}
