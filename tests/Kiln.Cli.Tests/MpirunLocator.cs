namespace Kiln.Cli.Tests;

/// <summary>Finds Open MPI's mpirun on PATH; the MPI tests skip, saying why, when it is absent.</summary>
internal static class MpirunLocator
{
    private static readonly Lazy<string?> Found = new(() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "mpirun"))
            .FirstOrDefault(File.Exists));

    public static string? SkipReason => Found.Value is null
        ? "mpirun not found on PATH: install Open MPI with scripts/install-mpi.sh (.ci/run does) to run the MPI tests"
        : null;
}
