using System.Diagnostics;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;

namespace Kiln.Cli.Tests;

/// <summary>A real kill -9 of a training process, at random moments while it checkpoints after every step.</summary>
public sealed class CheckpointKillTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-kill-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void KillDuringCheckpointWritesNeverLeavesACorruptLatestCheckpoint()
    {
        var rng = new Random(5);
        string data = Path.Combine(_dir, "train.bin");
        TokenStreamFile.Write(data, Enumerable.Range(0, 5000).Select(_ => rng.Next(64)).ToArray(), 64);
        string kiln = Path.Combine(AppContext.BaseDirectory, "kiln.dll");
        string outDir = Path.Combine(_dir, "run");
        string checkpoint = Path.Combine(outDir, "checkpoint.bin");
        long lastStep = 0;
        for (int round = 0; round < 4; round++)
        {
            // a ~6 MB checkpoint written after every step: most of the process's time goes to checkpoint writes
            var start = new ProcessStartInfo("dotnet")
            {
                ArgumentList = { kiln, "train", "--layers", "2", "--dim", "128", "--heads", "4", "--data", data, "--steps", "100000",
                    "--batch", "1", "--seq", "8", "--save-every", "1", "--threads", "1", "--out", outDir },
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            if (round > 0)
                start.ArgumentList.Add("--resume");
            using var process = Process.Start(start)!;
            process.ErrorDataReceived += (_, _) => { };
            process.OutputDataReceived += (_, _) => { };
            process.BeginErrorReadLine();
            process.BeginOutputReadLine();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(60) && !process.HasExited
                && (!File.Exists(checkpoint) || TrainingCheckpointStep(checkpoint) <= lastStep))
                Thread.Sleep(20);
            Assert.False(process.HasExited, "training ended early");
            Thread.Sleep(rng.Next(0, 400));
            process.Kill(entireProcessTree: true); // SIGKILL: no finally blocks, no flush
            process.WaitForExit();

            var ckpt = TrainingCheckpoint.Read(checkpoint); // throws on a torn or damaged file
            Assert.True(ckpt.Step > lastStep, $"round {round}: step {ckpt.Step} after {lastStep}");
            lastStep = ckpt.Step;
        }
    }

    /// <summary>The step of the latest complete checkpoint, or 0 while it is being replaced.</summary>
    private static long TrainingCheckpointStep(string path)
    {
        try
        {
            return TrainingCheckpoint.Read(path).Step;
        }
        catch (IOException)
        {
            return 0;
        }
    }
}
