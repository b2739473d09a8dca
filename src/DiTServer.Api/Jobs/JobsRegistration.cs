namespace DiTServer.Api.Jobs;

/// <summary>Composition of async jobs: options (validated at start), the store and its sweeper.</summary>
public static class JobsRegistration
{
    public static WebApplicationBuilder AddJobs(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<JobOptions>().BindConfiguration(JobOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<JobStore>();
        builder.AddSharedJobs();
        builder.Services.AddHostedService<JobSweeper>();
        return builder;
    }
}
