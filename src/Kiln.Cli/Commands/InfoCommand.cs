using System.CommandLine;
using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Cli.Commands;

/// <summary>kiln info: a GGUF file's header, metadata and tensor table.</summary>
internal static class InfoCommand
{
    public static Command Create(CliIO io)
    {
        var path = new Argument<string>("MODEL") { Description = "Path of a GGUF file" };
        var all = new Option<bool>("--all") { Description = "Print arrays in full instead of their first items" };
        var command = new Command("info", "Print a GGUF file's metadata and tensor table");
        command.Arguments.Add(path);
        command.Options.Add(all);
        command.SetAction(r =>
        {
            string file = r.GetValue(path)!;
            if (!File.Exists(file))
                throw new FileNotFoundException($"file not found: {file}", file);
            using var gguf = GgufFile.Open(file);
            var o = io.Out;
            o.WriteLine($"file:      {gguf.Path}");
            o.WriteLine($"size:      {gguf.FileLength:N0} bytes");
            o.WriteLine($"format:    GGUF v{gguf.Version}, alignment {gguf.Alignment}, data at byte {gguf.DataOffset}");
            o.WriteLine($"metadata:  {gguf.MetadataList.Count} keys");
            int keyWidth = gguf.MetadataList.Count == 0 ? 0 : gguf.MetadataList.Max(kv => kv.Key.Length);
            foreach (var (key, value) in gguf.MetadataList)
                o.WriteLine($"  {key.PadRight(keyWidth)}  {TypeName(value)}  {Render(value, r.GetValue(all))}");

            long parameters = gguf.Tensors.Sum(t => t.ElementCount);
            long bytes = gguf.Tensors.Sum(t => t.ByteSize);
            o.WriteLine($"tensors:   {gguf.Tensors.Count}, {parameters:N0} parameters, {bytes:N0} bytes" +
                (parameters > 0 ? $", {bytes * 8.0 / parameters:F2} bits per weight" : ""));
            if (gguf.Tensors.Count > 0)
            {
                int nameWidth = gguf.Tensors.Max(t => t.Name.Length);
                o.WriteLine($"  {"#",4}  {"name".PadRight(nameWidth)}  {"type",-7} {"shape",-22} {"bytes",14}  offset");
                for (int i = 0; i < gguf.Tensors.Count; i++)
                {
                    var t = gguf.Tensors[i];
                    string shape = "[" + string.Join(", ", t.Dimensions) + "]";
                    o.WriteLine($"  {i,4}  {t.Name.PadRight(nameWidth)}  {GgmlTypeTraits.Name(t.Type),-7} {shape,-22} {t.ByteSize,14:N0}  {t.Offset}");
                }
            }
            return 0;
        });
        return command;
    }

    private static string TypeName(GgufValue v) =>
        v.Type == GgufValueType.Array ? $"array<{v.AsArray().ElementType.ToString().ToLowerInvariant()}>" : v.Type.ToString().ToLowerInvariant();

    private static string Render(GgufValue value, bool all)
    {
        if (value.Type == GgufValueType.String)
            return Quote(value.AsString(), all ? int.MaxValue : 160);
        if (value.Type != GgufValueType.Array)
            return value.ToString();
        var array = value.AsArray();
        int shown = all ? array.Count : Math.Min(array.Count, 8);
        var items = new List<string>(shown);
        for (int i = 0; i < shown; i++)
        {
            object? item = array.Items.GetValue(i);
            items.Add(item switch
            {
                string s => Quote(s, 40),
                GgufArray nested => $"[{nested.ElementType.ToString().ToLowerInvariant()} × {nested.Count}]",
                float f => f.ToString("G9", System.Globalization.CultureInfo.InvariantCulture),
                double d => d.ToString("G17", System.Globalization.CultureInfo.InvariantCulture),
                _ => Convert.ToString(item, System.Globalization.CultureInfo.InvariantCulture) ?? "",
            });
        }
        string more = shown < array.Count ? $", … ({array.Count} items)" : "";
        return "[" + string.Join(", ", items) + more + "]";
    }

    private static string Quote(string s, int max)
    {
        var escaped = s.Replace("\\", "\\\\").Replace("\n", "\\n").Replace("\r", "\\r").Replace("\t", "\\t").Replace("\"", "\\\"");
        return "\"" + (escaped.Length > max ? escaped[..max] + "…" : escaped) + "\"";
    }
}
