using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace DiTServer.Api.Tests;

/// <summary>The README's curl examples are run too: each <c>curl … -X POST http://127.0.0.1:5000/PATH … -d 'BODY'</c>
/// is posted to the real server on the embedded demo model (the model the quick start serves), and must answer
/// 200 with what its <c>-o</c> file name says (a PNG).</summary>
public sealed partial class ReadmeCurlTests
{
    [GeneratedRegex(@"curl\s[^\n]*?-X POST\s+http://127\.0\.0\.1:5000(?<path>/\S+)[^\n]*?-d\s+'(?<body>[^']*)'(?<rest>[^\n]*)", RegexOptions.Singleline)]
    private static partial Regex CurlPost();

    [Fact]
    public async Task Every_curl_post_in_the_readme_answers_200_on_the_demo_model()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "README.md")).Replace("\\\n", " ");
        var posts = CurlPost().Matches(readme).ToList();
        Assert.NotEmpty(posts);
        using var factory = new ServerFactory(("DiT:Model", Path.Combine(RepositoryPaths.Root, "models", "dit-fashion-mnist")));
        var client = factory.CreateClient();
        foreach (var post in posts)
        {
            var response = await client.PostAsync(post.Groups["path"].Value,
                new StringContent(post.Groups["body"].Value, Encoding.UTF8, "application/json"));
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{post.Value}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            if (post.Groups["rest"].Value.Contains(".png"))
                Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        }
    }
}
