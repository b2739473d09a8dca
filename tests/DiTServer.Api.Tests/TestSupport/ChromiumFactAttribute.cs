namespace DiTServer.Api.Tests;

/// <summary>Skips the test, saying why, when Debian's chromium is not installed (.ci/run installs it).</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public const string Executable = "/usr/bin/chromium";

    public ChromiumFactAttribute()
    {
        if (!File.Exists(Executable))
            Skip = $"{Executable} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does) to run the browser test";
    }
}
