namespace Kiln.Models;

/// <summary>A model file that parses but cannot be run: unsupported architecture or type, missing or mis-shaped tensor.</summary>
public sealed class ModelFormatException(string message) : Exception(message);
