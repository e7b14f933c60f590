namespace Kiln.Tests.TestSupport;

/// <summary>
/// Locates the read-only reference data (../shared beside the checkout). Tests that need it use
/// <see cref="SharedFactAttribute"/> / <see cref="SharedTheoryAttribute"/> and are reported skipped when it is absent.
/// KILN_SHARED_DIR overrides the search.
/// </summary>
public static class SharedData
{
    private static readonly Lazy<string?> Root = new(Find);

    public static string? Directory => Root.Value;

    public static bool Exists => Root.Value is not null;

    public static string Path(params string[] parts)
    {
        string root = Root.Value ?? throw new InvalidOperationException("../shared not found");
        return System.IO.Path.Combine([root, .. parts]);
    }

    private static string? Find()
    {
        string? env = Environment.GetEnvironmentVariable("KILN_SHARED_DIR");
        if (!string.IsNullOrEmpty(env))
            return System.IO.Directory.Exists(env) ? System.IO.Path.GetFullPath(env) : null;

        // Walk up from the test binaries to the checkout (the folder holding Kiln.slnx), then look beside it.
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Kiln.slnx")))
            {
                string candidate = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir.FullName, "..", "shared"));
                return System.IO.Directory.Exists(candidate) ? candidate : null;
            }
        }
        return null;
    }
}

/// <summary>A fact that needs ../shared: skipped, with the reason, when the data is absent.</summary>
public sealed class SharedFactAttribute : FactAttribute
{
    public SharedFactAttribute()
    {
        if (!SharedData.Exists)
            Skip = "needs ../shared (reference data beside the checkout), which is absent";
    }
}

/// <summary>A theory that needs ../shared: skipped, with the reason, when the data is absent.</summary>
public sealed class SharedTheoryAttribute : TheoryAttribute
{
    public SharedTheoryAttribute()
    {
        if (!SharedData.Exists)
            Skip = "needs ../shared (reference data beside the checkout), which is absent";
    }
}
