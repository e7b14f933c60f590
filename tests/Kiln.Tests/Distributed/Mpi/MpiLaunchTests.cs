using Kiln.Distributed;
using Kiln.Distributed.Mpi;

namespace Kiln.Tests.Distributed.Mpi;

/// <summary>What the MPI side can be tested on without mpirun: launcher detection and the bfloat16 reduction.</summary>
public sealed class MpiLaunchTests
{
    [Theory]
    [InlineData(null, null, null, null)]
    [InlineData("4", null, null, "OMPI_COMM_WORLD_SIZE=4")]
    [InlineData(null, "3", null, "PMIX_RANK=3")]
    [InlineData(null, null, "2", "PMI_SIZE=2")]
    [InlineData("", null, "8", "PMI_SIZE=8")]
    public void LauncherIsDetectedFromItsVariables(string? ompiSize, string? pmixRank, string? pmiSize, string? expected)
    {
        var env = new Dictionary<string, string?> { ["OMPI_COMM_WORLD_SIZE"] = ompiSize, ["PMIX_RANK"] = pmixRank, ["PMI_SIZE"] = pmiSize };
        Assert.Equal(expected, MpiLaunch.Detect(name => env.GetValueOrDefault(name)));
    }

    [Fact]
    public void BFloat16SumAddsInFloatAndRoundsEachResultToNearestEven()
    {
        var rng = new Random(3);
        const int n = 1037;
        var a = new BFloat16[n];
        var b = new BFloat16[n];
        for (int i = 0; i < n; i++)
        {
            a[i] = new BFloat16((ushort)rng.Next(0x10000));
            b[i] = new BFloat16((ushort)rng.Next(0x10000));
        }
        a[0] = (BFloat16)1f;
        b[0] = (BFloat16)(1f / 256); // 1 + 2^-8 is halfway between two bfloat16s: ties go to the even one, 1
        a[1] = (BFloat16)1f;
        b[1] = (BFloat16)(3f / 256); // 1 + 3·2^-8 is halfway too: to even, 1 + 2^-6
        var sum = (BFloat16[])b.Clone();
        BFloat16Sum.Add(a, sum);
        Assert.Equal(1f, (float)sum[0]);
        Assert.Equal(1f + 1f / 64, (float)sum[1]);
        for (int i = 0; i < n; i++)
        {
            float exact = BitConverter.UInt32BitsToSingle((uint)a[i].Bits << 16) + BitConverter.UInt32BitsToSingle((uint)b[i].Bits << 16);
            if (float.IsNaN(exact))
            {
                Assert.True(float.IsNaN((float)sum[i]), $"element {i}");
                continue;
            }
            uint bits = BitConverter.SingleToUInt32Bits(exact);
            ushort expected = (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
            Assert.True(expected == sum[i].Bits, $"element {i}: {a[i].Bits:x4} + {b[i].Bits:x4} gave {sum[i].Bits:x4}, expected {expected:x4}");
        }
    }
}
