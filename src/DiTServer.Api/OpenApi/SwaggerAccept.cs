namespace DiTServer.Api.OpenApi;

/// <summary>Makes Swagger UI's response media-type selector ("Controls Accept header") send what it shows.</summary>
/// <remarks>Swagger UI stores the selection only when the user changes it, so with the first entry still selected the
/// request goes out with <c>Accept: */*</c>, and <c>POST /v1/images</c> answers a PNG while the page shows
/// application/json. This request interceptor reads the selector of the operation being executed and sets Accept
/// from it whenever the UI left it at <c>*/*</c>.</remarks>
public static class SwaggerAccept
{
    public const string Interceptor = """
        (req) => {
          const accept = req.headers && (req.headers.accept || req.headers.Accept);
          if (accept && accept !== '*/*') return req;
          const path = new URL(req.url, window.location.href).pathname;
          for (const block of document.querySelectorAll('.opblock')) {
            const template = block.querySelector('.opblock-summary-path')?.getAttribute('data-path');
            const method = block.querySelector('.opblock-summary-method')?.textContent?.toLowerCase();
            if (!template || method !== (req.method || 'get').toLowerCase()) continue;
            const pattern = new RegExp('^' + template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+') + '$');
            if (!pattern.test(path)) continue;
            const chosen = block.querySelector('.responses-wrapper select')?.value;
            if (chosen) { delete req.headers.Accept; req.headers.accept = chosen; }
            break;
          }
          return req;
        }
        """;
}
