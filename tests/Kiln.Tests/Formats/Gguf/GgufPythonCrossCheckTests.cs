using System.Diagnostics;
using System.Text.Json;
using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Tests.Formats.Gguf;

/// <summary>A fact that needs ../shared and python3 on PATH; skipped, saying which is missing, otherwise.</summary>
public sealed class SharedPythonFactAttribute : FactAttribute
{
    public SharedPythonFactAttribute()
    {
        if (!SharedData.Exists)
            Skip = "needs ../shared (reference data beside the checkout), which is absent";
        else if (PythonPath() is null)
            Skip = "needs python3 on PATH";
    }

    public static string? PythonPath() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, OperatingSystem.IsWindows() ? "python3.exe" : "python3"))
            .FirstOrDefault(File.Exists);
}

/// <summary>Files from GgufWriter read by an independent reader: ../shared/tools/gguf_lib.py.</summary>
public class GgufPythonCrossCheckTests
{
    private const string DumpScript = """
        import json, sys
        sys.path.insert(0, sys.argv[1])
        from gguf_lib import read_gguf
        version, kv, tensors, data_start = read_gguf(sys.argv[2])
        def plain(v):
            return [v[0], [plain(x) for x in v[1]]] if isinstance(v, tuple) else v
        json.dump({"version": version, "data_start": data_start,
                   "kv": [[k, t, plain(v)] for k, t, v in kv],
                   "tensors": [[n, d, t, o] for n, d, t, o in tensors]}, sys.stdout, separators=(",", ":"))
        """;

    [SharedPythonFact]
    public void GguflibReadsWhatTheWriterWrote()
    {
        var w = new GgufWriter(2);
        w.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        w.SetMetadata("general.alignment", GgufValue.FromUInt32(64));
        w.SetMetadata("i8", GgufValue.FromInt8(-5));
        w.SetMetadata("u64", GgufValue.FromUInt64(1UL << 40));
        w.SetMetadata("f64", GgufValue.FromFloat64(0.125));
        w.SetMetadata("flag", GgufValue.FromBool(true));
        w.SetMetadata("tokens", GgufValue.FromArray(GgufArray.Of("<s>", "▁hi", "")));
        w.SetMetadata("scores", GgufValue.FromArray(GgufArray.Of(-1.5f, 2f)));
        w.SetMetadata("shorts", GgufValue.FromArray(GgufArray.Of(new short[] { -3, 4 })));
        w.SetMetadata("nested", GgufValue.FromArray(GgufArray.Of(GgufArray.Of(1u, 2u), GgufArray.Of("z"))));
        w.AddTensor("a", GgmlType.F32, [3, 2], new byte[24]);
        w.AddTensor("b", GgmlType.Q8_0, [32], new byte[34]);

        using var tmp = new TempFiles();
        string path = tmp.File("cross.gguf");
        w.Write(path);

        var psi = new ProcessStartInfo(SharedPythonFactAttribute.PythonPath()!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(DumpScript);
        psi.ArgumentList.Add(SharedData.Path("tools"));
        psi.ArgumentList.Add(path);
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(30_000), "python3 did not finish");
        Assert.True(p.ExitCode == 0, stderr);

        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal(2, root.GetProperty("version").GetInt32());
        var kv = root.GetProperty("kv").EnumerateArray().ToArray();
        Assert.Equal(10, kv.Length);
        Assert.Equal("[\"general.architecture\",8,\"llama\"]", kv[0].GetRawText());
        Assert.Equal("[\"general.alignment\",4,64]", kv[1].GetRawText());
        Assert.Equal("[\"i8\",1,-5]", kv[2].GetRawText());
        Assert.Equal("[\"u64\",10,1099511627776]", kv[3].GetRawText());
        Assert.Equal("[\"f64\",12,0.125]", kv[4].GetRawText());
        Assert.Equal("[\"flag\",7,true]", kv[5].GetRawText());
        Assert.Equal("[\"tokens\",9,[8,[\"<s>\",\"\\u2581hi\",\"\"]]]", kv[6].GetRawText());
        Assert.Equal("[\"scores\",9,[6,[-1.5,2.0]]]", kv[7].GetRawText());
        Assert.Equal("[\"shorts\",9,[3,[-3,4]]]", kv[8].GetRawText());
        Assert.Equal("[\"nested\",9,[9,[[4,[1,2]],[8,[\"z\"]]]]]", kv[9].GetRawText());
        var tensors = root.GetProperty("tensors").EnumerateArray().Select(t => t.GetRawText()).ToArray();
        Assert.Equal(["[\"a\",[3,2],0,0]", "[\"b\",[32],8,64]"], tensors);

        long dataStart = root.GetProperty("data_start").GetInt64();
        Assert.Equal(0, dataStart % 64);
        // Data section = 24 bytes of "a" padded to 64, then 34 bytes of "b" padded to 64.
        Assert.Equal(dataStart + 128, new FileInfo(path).Length);
    }
}
