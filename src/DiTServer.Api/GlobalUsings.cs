// The namespaces that a third or more of this project's files import: the served model and its queue (Core.Pipeline,
// Core.Serving), the request parsing and answers every route shares (Generation, Http), and ASP.NET's typed results
// and options. Named once here instead of atop each endpoint, job and admin file.
global using DiTServer.Api.Generation;
global using DiTServer.Api.Http;
global using DiTServer.Core.Pipeline;
global using DiTServer.Core.Serving;
global using Microsoft.AspNetCore.Http.HttpResults;
global using Microsoft.Extensions.Options;
