using System.Security.Cryptography;
using System.Text;
using Microsoft.Playwright;

namespace DiTServer.Api.Tests;

/// <summary>The playground on a server with tenants: without a key the submission shows the 401's message; once the
/// key is entered (and kept in localStorage) the page generates, following the job's events and fetching its result
/// with the key.</summary>
public sealed class TenantPlaygroundBrowserTests
{
    private const string Key = "playground-tenant-key";

    [ChromiumFact]
    public async Task With_tenants_the_page_shows_the_401_then_generates_once_the_key_is_entered()
    {
        var sha = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(Key)));
        using var factory = new ServerFactory(("Serving:MaxBatchRows", "16"), ("Tenants:0:Name", "web"), ("Tenants:0:ApiKeySha256", sha));
        await using var session = await BrowserSession.StartAsync(factory);
        var address = session.Address;
        await factory.WaitFor(s => s.Ready, "warm-up");
        var page = await session.Browser.NewPageAsync();
        var authorizations = new List<string?>();
        page.Request += (_, r) =>
        {
            if (new Uri(r.Url).AbsolutePath.StartsWith("/v1/jobs", StringComparison.Ordinal))
                lock (authorizations) authorizations.Add(r.Headers.GetValueOrDefault("authorization"));
        };
        await page.GotoAsync(address + "/");
        await page.WaitForFunctionAsync("document.querySelectorAll('#class option').length > 0");
        await page.SelectOptionAsync("#class", "3");
        await page.FillAsync("#steps-number", "4");
        await page.FillAsync("#count", "2");

        await page.ClickAsync("#generate");
        await page.Locator("#error").WaitForAsync(new LocatorWaitForOptions { State = WaitForSelectorState.Visible });
        Assert.Contains("Authorization: Bearer", await page.TextContentAsync("#error"));
        Assert.Contains("API key", await page.TextContentAsync("#error"));
        Assert.Equal("Not started.", await page.TextContentAsync("#status"));

        await page.FillAsync("#api-key", Key);
        await page.DispatchEventAsync("#api-key", "change");
        Assert.Equal(Key, await page.EvaluateAsync<string>("() => localStorage.getItem('ditserver.apiKey')"));
        await page.ClickAsync("#generate");
        await page.Locator("#results img:not(.preview)").Nth(1).WaitForAsync(new LocatorWaitForOptions { Timeout = 60_000 });
        Assert.Equal("Done.", await page.TextContentAsync("#status"));
        Assert.False(await page.IsVisibleAsync("#error"));
        Assert.True(await page.EvalOnSelectorAsync<bool>("#results img", "img => img.complete && img.naturalWidth > 0"), "the image did not decode");
        // The grid download was fetched with the key (a plain link could not send it).
        Assert.StartsWith("blob:", await page.GetAttributeAsync("#download", "href"));
        lock (authorizations)
        {
            Assert.Null(authorizations[0]); // the first POST, before the key
            Assert.True(authorizations.Count >= 4, string.Join(", ", authorizations)); // POST, events, result, grid
            Assert.All(authorizations.Skip(1), a => Assert.Equal($"Bearer {Key}", a));
        }

        // The key survives a reload.
        await page.ReloadAsync();
        Assert.Equal(Key, await page.InputValueAsync("#api-key"));
    }
}
