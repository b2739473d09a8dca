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

    [Fact]
    public void A_relative_link_is_resolved_from_its_real_parent_not_from_the_path_as_written()
    {
        // a/b/c is the root itself; x (in the root) points to ../outside. Written, a/b/c/x/.. is a/b: inside. The kernel
        // resolves ../ from x's real folder, the root, so a/b/c/x is the outside folder.
        Directory.CreateDirectory(Path.Combine(root, "a", "b"));
        Directory.CreateSymbolicLink(Path.Combine(root, "a", "b", "c"), root);
        File.CreateSymbolicLink(Path.Combine(root, "x"), Path.Combine("..", Path.GetFileName(outside)));
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "a/b/c/x", "output")).Message);
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "a/b/c/x/run", "output")).Message);
        Assert.Equal(outside, ConfinedPath.RealPath(Path.Combine(root, "a", "b", "c", "x")));
    }

    [Fact]
    public void Chains_of_links_are_followed_to_their_end()
    {
        Directory.CreateDirectory(Path.Combine(root, "real"));
        // l1 → (absolute) l2 → (relative) l3 → outside
        Directory.CreateSymbolicLink(Path.Combine(root, "l3"), outside);
        File.CreateSymbolicLink(Path.Combine(root, "l2"), "l3");
        File.CreateSymbolicLink(Path.Combine(root, "l1"), Path.Combine(root, "l2"));
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "l1", "dataset")).Message);
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "l1/new/run", "output")).Message);
        // c1 → c2 → real: a chain that stays inside is fine.
        File.CreateSymbolicLink(Path.Combine(root, "c2"), "real");
        File.CreateSymbolicLink(Path.Combine(root, "c1"), "c2");
        Assert.Equal(Path.Combine(root, "c1", "run"), ConfinedPath.Resolve(root, "c1/run", "output"));
        // A loop is refused, not followed forever.
        File.CreateSymbolicLink(Path.Combine(root, "loop1"), "loop2");
        File.CreateSymbolicLink(Path.Combine(root, "loop2"), "loop1");
        Assert.Contains("cannot be resolved", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "loop1/x", "output")).Message);
    }

    [Fact]
    public void Links_to_the_root_itself_stay_inside_and_links_to_its_parent_do_not()
    {
        Directory.CreateDirectory(Path.Combine(root, "data"));
        Directory.CreateSymbolicLink(Path.Combine(root, "self"), root);
        File.CreateSymbolicLink(Path.Combine(root, "dot"), ".");
        Assert.Equal(Path.Combine(root, "self", "self", "data"), ConfinedPath.Resolve(root, "self/self/data", "dataset"));
        Assert.Equal(Path.Combine(root, "dot", "data"), ConfinedPath.Resolve(root, "dot/data", "dataset"));
        File.CreateSymbolicLink(Path.Combine(root, "up"), "..");
        Directory.CreateSymbolicLink(Path.Combine(root, "slash"), "/");
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "up", "dataset")).Message);
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "slash/etc", "dataset")).Message);
        // The root may itself be reached through a link (a configured path with a link in it).
        var linkedRoot = root + "-link";
        Directory.CreateSymbolicLink(linkedRoot, root);
        try { Assert.Equal(Path.Combine(linkedRoot, "data"), ConfinedPath.Resolve(linkedRoot, "data", "dataset")); }
        finally { File.Delete(linkedRoot); }
    }

    [Fact]
    public void Relative_links_that_climb_out_are_refused_at_any_depth()
    {
        Directory.CreateDirectory(Path.Combine(root, "d", "e"));
        var name = Path.GetFileName(outside);
        File.CreateSymbolicLink(Path.Combine(root, "d", "e", "esc"), Path.Combine("..", "..", "..", name));
        File.CreateSymbolicLink(Path.Combine(root, "d", "e", "stay"), Path.Combine("..", "..", "d"));
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "d/e/esc", "dataset")).Message);
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "d/e/esc/deeper/new", "output")).Message);
        Assert.Equal(Path.Combine(root, "d", "e", "stay", "e"), ConfinedPath.Resolve(root, "d/e/stay/e", "dataset"));
        // A dangling link that would be created outside is refused too.
        File.CreateSymbolicLink(Path.Combine(root, "d", "dangling"), Path.Combine("..", "..", name + "-not-yet"));
        Assert.Contains("link outside", Assert.Throws<ArgumentException>(() => ConfinedPath.Resolve(root, "d/dangling", "output")).Message);
    }
}
