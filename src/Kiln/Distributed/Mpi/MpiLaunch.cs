namespace Kiln.Distributed.Mpi;

/// <summary>
/// Tells whether this process was started by an MPI launcher, from the variables launchers set for each rank:
/// OMPI_COMM_WORLD_SIZE (Open MPI's mpirun), PMIX_RANK (PMIx launchers: Open MPI 4/5, srun --mpi=pmix) and PMI_SIZE
/// (MPICH's Hydra, Intel MPI, srun --mpi=pmi2).
/// </summary>
public static class MpiLaunch
{
    public static readonly string[] Variables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"];

    /// <summary>The first launcher variable set, as "NAME=value", or null when no launcher started this process.</summary>
    public static string? Detect(Func<string, string?> environment)
    {
        foreach (string name in Variables)
            if (environment(name) is { Length: > 0 } value)
                return $"{name}={value}";
        return null;
    }

    public static string? Detect() => Detect(Environment.GetEnvironmentVariable);
}
