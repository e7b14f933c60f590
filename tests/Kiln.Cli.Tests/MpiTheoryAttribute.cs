namespace Kiln.Cli.Tests;

/// <summary>A theory that runs mpirun: skipped, with the reason, when Open MPI is not installed.</summary>
public sealed class MpiTheoryAttribute : TheoryAttribute
{
    public MpiTheoryAttribute() => Skip = MpirunLocator.SkipReason;
}
