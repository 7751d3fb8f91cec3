/* The method table of the compressor's Server: included inside `class Server`. Written by
 * hand here in the form chi_refresh_repo generates: one line per method, naming the fields in
 * the order SerializeIn and then SerializeOut first name them. */
static void ChiRegister(::chi::MethodTable<Server> &t) {
  t.Create<&Server::Create>({"compress_id_"});
  t.Destroy<&Server::Destroy>();
  t.Method<&Server::Compress, &Server::MonitorCompress>(Method::kCompress, "Compress",
                                                        {"data_", "data_size_"});
  t.Method<&Server::Decompress, &Server::MonitorDecompress>(Method::kDecompress, "Decompress",
                                                            {"data_", "data_size_"});
  t.Method<&Server::Chain, &Server::MonitorChain>(Method::kChain, "Chain",
                                                  {"depth_", "reached_", "pid_", "container_"});
  t.Method<&Server::Where, &Server::MonitorWhere>(Method::kWhere, "Where", {"pid_"});
}
