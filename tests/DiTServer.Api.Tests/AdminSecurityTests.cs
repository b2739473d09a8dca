using DiTServer.Api.Admin;

namespace DiTServer.Api.Tests;

/// <summary>The admin key check and the path confinement the training API relies on.</summary>
public class AdminSecurityTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-root-").FullName;
    private readonly string outside = Directory.CreateTempSubdirectory("dit-outside-").FullName;

    public void Dispose()
    {
        Directory.Delete(root, true);
        Directory.Delete(outside, true);
    }

    [Fact]
    public void Key_is_accepted_only_as_bearer_with_the_right_value()
    {
        var key = AdminKey.FromConfiguredHash(AdminKey.HashOf("s3cret"))!;
        Assert.True(key.Accepts("Bearer s3cret"));
        Assert.True(key.Accepts("bearer s3cret "));
        Assert.False(key.Accepts("Bearer s3cret2"));
        Assert.False(key.Accepts("Basic s3cret"));
        Assert.False(key.Accepts("s3cret"));
        Assert.False(key.Accepts(null));
        Assert.False(key.Accepts("Bearer "));
    }

    [Fact]
    public void Hash_matches_sha256sum_and_config_is_validated()
    {
        // echo -n admin | sha256sum
        Assert.Equal("8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918", AdminKey.HashOf("admin"));
        Assert.Null(AdminKey.FromConfiguredHash(null));
        Assert.Null(AdminKey.FromConfiguredHash(" "));
        Assert.Throws<ArgumentException>(() => AdminKey.FromConfiguredHash("abc"));
        Assert.Throws<ArgumentException>(() => AdminKey.FromConfiguredHash(new string('z', 64)));
    }

    [Fact]
    public void Paths_inside_the_root_resolve()
    {
        Directory.CreateDirectory(Path.Combine(root, "data", "fashion"));
        Assert.Equal(Path.Combine(root, "data", "fashion"), ConfinedPath.Resolve(root, "data/fashion", "dataset"));
        Assert.Equal(Path.Combine(root, "new", "run1"), ConfinedPath.Resolve(root, "new/run1", "output"));
        Assert.Equal(Path.Combine(root, "data"), ConfinedPath.Resolve(root, Path.Combine(root, "data"), "dataset"));
    }

    [Theory]
    [InlineData("../etc", "'..'")]
    [InlineData("data/../../x", "'..'")]
    [InlineData("/etc/passwd", "outside the allowed folder")]
    [InlineData("", "empty")]
    public void Escapes_are_refused(string path, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, path, "dataset"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Symlinks_pointing_outside_are_refused_and_inside_ones_allowed()
    {
        Directory.CreateSymbolicLink(Path.Combine(root, "out"), outside);
        Directory.CreateDirectory(Path.Combine(root, "real"));
        Directory.CreateSymbolicLink(Path.Combine(root, "in"), Path.Combine(root, "real"));
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "out", "dataset")).Message);
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "out/sub/file", "dataset")).Message);
        Assert.Equal(Path.Combine(root, "in"), ConfinedPath.Resolve(root, "in", "dataset"));
    }
}
