package server

// registerQueryCommands registers the query, update and aggregate commands.
func (s *Server) registerQueryCommands() {
	s.handle("count", s.cmdCount)
	s.handle("distinct", s.cmdDistinct)
	s.handle("find", s.cmdFind)
	s.handle("update", s.cmdUpdate)
	s.handle("findAndModify", s.cmdFindAndModify)
	s.handle("findandmodify", s.cmdFindAndModify)
	s.handle("aggregate", s.cmdAggregate)
}
