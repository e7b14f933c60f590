using Kiln.Training.Data;

namespace Kiln.Tests.TestSupport;

/// <summary>
/// Training data for the parallel-training tests: the 13-token cycle i·stride mod 13 with one token in five replaced at
/// random (seed 11), learnable within a few steps but not trivially, so the runs being compared move.
/// </summary>
public static class NoisyCycleTokens
{
    /// <summary>Writes the stream into <paramref name="directory"/> once, then opens it.</summary>
    public static TokenStream Open(string directory, int length, int stride)
    {
        string path = Path.Combine(directory, $"noisy-cycle-{length}-{stride}.bin");
        if (!File.Exists(path))
        {
            var rng = new Random(11);
            TokenStreamFile.Write(path, Enumerable.Range(0, length).Select(i => rng.Next(5) == 0 ? rng.Next(13) : i * stride % 13).ToArray(), 13);
        }
        return TokenStream.Open(path);
    }
}
