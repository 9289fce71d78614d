package server

// registerQueryCommands registers the query, update and aggregate commands.
func (s *Server) registerQueryCommands() {
	s.command("count", "count the documents matching a query", s.cmdCount).apiV1()
	s.command("distinct", "list the distinct values of a field", s.cmdDistinct)
	s.command("find", "query a collection", s.cmdFind).apiV1()
	s.command("update", "update documents", s.cmdUpdate).apiV1()
	s.command("findAndModify", "update or remove one document and return it", s.cmdFindAndModify).apiV1()
	s.command("findandmodify", "the lower-case name of findAndModify", s.cmdFindAndModify)
	s.command("aggregate", "run an aggregation pipeline or open a change stream", s.cmdAggregate).apiV1()
}
