namespace Kiln.Cli.Tests;

/// <summary>A fact that runs mpirun: skipped, with the reason, when Open MPI is not installed.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute() => Skip = MpirunLocator.SkipReason;
}
