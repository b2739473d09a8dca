namespace DiTServer.Api.Admin;

/// <summary>A checkpoint that exists but cannot be loaded (damaged, truncated, another format): 422 with the reason.</summary>
public sealed class UnusableCheckpointException(string message, Exception? inner = null) : Exception(message, inner);
