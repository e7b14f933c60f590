using System.Diagnostics;
using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Tests.Formats.Gguf;

/// <summary>
/// Damaged copies of a valid file: every one must either open (and then be fully readable) or throw
/// GgufFormatException; no other exception type, no hang.
/// </summary>
public sealed class GgufFuzzTests : IDisposable
{
    private readonly TempFiles _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private static byte[] ValidFile(out long lastTensorEnd)
    {
        var w = new GgufWriter();
        w.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        w.SetMetadata("general.alignment", GgufValue.FromUInt32(16));
        w.SetMetadata("llama.block_count", GgufValue.FromUInt32(2));
        w.SetMetadata("llama.rms_eps", GgufValue.FromFloat32(1e-5f));
        w.SetMetadata("flag", GgufValue.FromBool(true));
        w.SetMetadata("tokenizer.ggml.tokens", GgufValue.FromArray(GgufArray.Of("<unk>", "<s>", "</s>", "▁a", "b")));
        w.SetMetadata("tokenizer.ggml.scores", GgufValue.FromArray(GgufArray.Of(0f, -1f, -2f, -3f, -4f)));
        w.SetMetadata("bools", GgufValue.FromArray(GgufArray.Of(true, false)));
        w.SetMetadata("nested", GgufValue.FromArray(GgufArray.Of(GgufArray.Of(1L, 2L), GgufArray.Of("x"))));
        w.SetMetadata("i64", GgufValue.FromInt64(-5));
        var rng = new Random(99);
        byte[] a = new byte[8 * 2 * 4], b = new byte[34 * 2], c = new byte[18];
        rng.NextBytes(a);
        rng.NextBytes(b);
        rng.NextBytes(c);
        w.AddTensor("a", GgmlType.F32, [8, 2], a);
        w.AddTensor("b", GgmlType.Q8_0, [64], b);
        w.AddTensor("c", GgmlType.Q4_0, [32], c);
        var ms = new MemoryStream();
        w.Write(ms);
        byte[] bytes = ms.ToArray();
        lastTensorEnd = bytes.Length - (18 % 16 == 0 ? 0 : 16 - 18 % 16);
        return bytes;
    }

    /// <summary>Opens and touches everything: true when it opened, false on a clean reject, the escaped exception otherwise.</summary>
    private static (bool Opened, Exception? Escaped) OpenAndRead(string path)
    {
        try
        {
            using var f = GgufFile.Open(path);
            foreach (var (_, v) in f.MetadataList)
                _ = v.ToString();
            foreach (var t in f.Tensors)
            {
                var bytes = f.GetTensorBytes(t);
                _ = bytes[0] ^ bytes[^1];
            }
            return (true, null);
        }
        catch (GgufFormatException)
        {
            return (false, null);
        }
        catch (Exception e)
        {
            return (false, e);
        }
    }

    [Fact]
    public void EveryTruncationIsRejectedCleanly()
    {
        byte[] valid = ValidFile(out long lastTensorEnd);
        string path = _tmp.File("cut.gguf");
        for (int length = 0; length < valid.Length; length++)
        {
            File.WriteAllBytes(path, valid[..length]);
            var (opened, escaped) = OpenAndRead(path);
            Assert.True(escaped is null, $"truncated to {length} bytes: {escaped?.GetType().Name}: {escaped?.Message}");
            // Only the zero padding after the last tensor may be cut without losing data.
            Assert.True(!opened || length >= lastTensorEnd, $"truncated to {length} of {valid.Length} bytes was accepted");
        }
    }

    [Fact]
    public async Task RandomByteDamageNeverEscapesAsAnotherException()
    {
        byte[] valid = ValidFile(out _);
        using var intact = GgufFile.Open(_tmp.Write("intact.gguf", valid));
        long metadataEnd = intact.DataOffset;
        string path = _tmp.File("damaged.gguf");
        var rng = new Random(20240601);
        int opened = 0;
        const int cases = 3000;
        for (int n = 0; n < cases; n++)
        {
            byte[] damaged = (byte[])valid.Clone();
            int flips = 1 + rng.Next(3);
            for (int k = 0; k < flips; k++)
            {
                // Mostly the structural part: damage to tensor data bytes is legal and uninteresting.
                int pos = rng.Next(10) < 9 ? rng.Next((int)metadataEnd) : rng.Next(damaged.Length);
                damaged[pos] = rng.Next(2) == 0 ? (byte)(damaged[pos] ^ (1 << rng.Next(8))) : (byte)rng.Next(256);
            }
            File.WriteAllBytes(path, damaged);
            // A hang guard, not a timing: an absurd count that made the reader loop would never finish.
            var (wasOpened, escaped) = await Task.Run(() => OpenAndRead(path)).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.True(escaped is null, $"case {n}: {escaped?.GetType().Name}: {escaped?.Message}\n{escaped?.StackTrace}");
            if (wasOpened)
                opened++;
        }
        // Some damage (e.g. inside string contents or float values) is still a valid file.
        Assert.InRange(opened, 1, cases - 1);
    }
}
