using System.CommandLine;
using Kiln.Formats.Gguf;

namespace Kiln.Cli.Commands;

/// <summary>
/// --mmap / --no-mmap, shared by the commands that load a model: how the weights are made addressable
/// (<see cref="GgufLoadMode"/>). Neither flag leaves the choice to Kiln (Auto); both at once is an error.
/// </summary>
internal sealed class LoadModeFlags
{
    public readonly Option<bool> Mmap = new("--mmap")
    {
        Description = "Memory-map the model file instead of copying it (less memory when several processes share the file; slower decode)",
    };
    public readonly Option<bool> NoMmap = new("--no-mmap")
    {
        Description = "Copy the model into huge-page memory even when Kiln would map it (default: copy on Linux when the file is ≥ 64 MiB and fits in memory)",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Mmap);
        command.Options.Add(NoMmap);
    }

    public GgufLoadMode Resolve(ParseResult r)
    {
        bool map = r.GetValue(Mmap), copy = r.GetValue(NoMmap);
        if (map && copy)
            throw new CliException("give --mmap or --no-mmap, not both");
        return map ? GgufLoadMode.Map : copy ? GgufLoadMode.Copy : GgufLoadMode.Auto;
    }
}
