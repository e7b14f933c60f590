using System.Text;

namespace Kiln.Cli;

/// <summary>UTF-8 (no BOM) writers over the process's standard streams; flushed explicitly so streaming text costs no allocation.</summary>
internal static class ConsoleStreams
{
    public static readonly TextWriter Stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false), 4096) { AutoFlush = false };
    public static readonly TextWriter Stderr = new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false), 1024) { AutoFlush = true };
}
