using System.Reflection;
using System.Text.Json.Serialization;
using DiTServer.Api.Admin;
using DiTServer.Api.Endpoints;
using DiTServer.Api.Generation;
using DiTServer.Api.Http;

namespace DiTServer.Api.Tests;

/// <summary>Field names come from one snake_case policy (<see cref="WireJson"/>); a hand-written name is left only
/// where it differs from the policy's, and a request record's fields are all settable.</summary>
public sealed class WireJsonTests
{
    [Fact]
    public void No_JsonPropertyName_repeats_what_the_naming_policy_gives()
    {
        var redundant = typeof(WireJson).Assembly.GetTypes()
            .SelectMany(t => t.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly))
            .Where(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name == WireJson.Names.ConvertName(p.Name))
            .Select(p => $"{p.DeclaringType!.Name}.{p.Name}")
            .ToList();
        Assert.Empty(redundant);
    }

    [Fact]
    public void The_hand_written_names_are_the_wire_names_that_differ_from_the_policy()
    {
        Assert.Equal("unipc_variant", WireJson.NameOf(typeof(ImageRequest).GetProperty(nameof(ImageRequest.UniPcVariant))!));
        Assert.Equal("uni_pc_variant", WireJson.Names.ConvertName(nameof(ImageRequest.UniPcVariant)));
        Assert.Equal("class_label", WireJson.NameOf(typeof(ImageRequest).GetProperty(nameof(ImageRequest.ClassLabel))!));
    }

    public static TheoryData<Type> RequestRecords =>
        [typeof(ImageRequest), typeof(JobRequest), typeof(OpenAIImageRequest), typeof(TrainingJobRequest), typeof(TrainingModelSpec),
            typeof(ResumeRequest)];

    [Theory]
    [MemberData(nameof(RequestRecords))]
    public void Every_field_of_a_request_record_is_snake_case_and_settable(Type record)
    {
        foreach (var field in JsonContract.Options.GetTypeInfo(record).Properties)
        {
            Assert.True(field.Set is not null, $"{record.Name}.{field.Name} is listed as a field but cannot be set");
            Assert.Equal(field.Name.ToLowerInvariant(), field.Name);
        }
    }
}
