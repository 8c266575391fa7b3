using System.CommandLine;
using RealtimeAssistant.Cli;
using RealtimeAssistant.Cli.Commands;

RealtimeAssistant.Model.Engine.Notice = line => Console.Error.WriteLine(line);
var root = new RootCommand("RealtimeAssistant: a real-time vision assistant (multimodal LLMs in TorchSharp: LLaVA, LLaVA-OneVision, Qwen2-VL, SmolVLM2).");
root.Subcommands.Add(CaptionCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(AnalyzeCommand.Create());
root.Subcommands.Add(AnnotateCommand.Create());
root.Subcommands.Add(StreamCommand.Create());
root.Subcommands.Add(LiveCommand.Create());
root.Subcommands.Add(ProfileCommand.Create());
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(ClusterCommand.Create());
return await Cli.Main(root, args);
