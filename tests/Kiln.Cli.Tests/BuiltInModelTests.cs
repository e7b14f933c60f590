using Kiln.Cli.Commands;

namespace Kiln.Cli.Tests;

/// <summary>
/// The model Kiln trained itself ships with the command: run without -m loads it, and its greedy text is the
/// same as with the path given explicitly (no ../shared needed: the model is in the repository).
/// </summary>
public class BuiltInModelTests
{
    [Fact]
    public void RunWithoutModelUsesTheBuiltInModel()
    {
        Assert.True(File.Exists(BuiltInModel.Path), $"built-in model missing at {BuiltInModel.Path}");
        var implicitModel = KilnRunner.Run("run", "-p", "ROMEO:", "-n", "24", "--temp", "0");
        Assert.True(implicitModel.ExitCode == 0, implicitModel.Stderr);
        Assert.StartsWith("ROMEO:", implicitModel.Stdout);
        Assert.True(implicitModel.Stdout.Length > "ROMEO:".Length + 10, implicitModel.Stdout);

        var explicitModel = KilnRunner.Run("run", "-m", BuiltInModel.Path, "-p", "ROMEO:", "-n", "24", "--temp", "0");
        Assert.Equal(implicitModel.Stdout, explicitModel.Stdout);
    }
}
